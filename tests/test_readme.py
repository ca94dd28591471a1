"""README's Python API example runs as written, and README keeps its first screen for the set-up."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_api_example_runs(monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    code = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "max_psnr_gt" in out and "vit+3c" in out


def test_readme_first_screen_has_the_set_up_and_contents():
    lines = (REPO / "README.md").read_text().splitlines()
    head = "\n".join(lines[:50])
    assert "pip install -e '.[test]'" in head and "python -m pytest -q" in head and "## Contents" in head
