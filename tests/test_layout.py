"""The package's layout is its architecture: no import circle between its modules, and a probe's name is spelled
only where the probe is defined, registered or read from a preset."""

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "biasprobe"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the biasprobe modules its source imports (anywhere in it, function bodies included). ``from P import
    N`` points at the module P.N when N is one, else at P; a module's parent packages, which Python runs first,
    are not counted as its imports."""
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    targets.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "biasprobe.archs.registry" in graph["biasprobe.archs.timm_adapter"]
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_imports_no_adapter():
    """The timm adapter plugs into the registry through its resolver hook; the registry names no adapter."""
    graph = import_graph()
    assert graph["biasprobe.archs.registry"] <= {"biasprobe.errors", "biasprobe.literal"}
    tree = ast.parse((PKG / "archs" / "registry.py").read_text())
    for node in ast.walk(tree):  # the code without its docstrings
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body.pop(0)
    code = ast.unparse(tree)
    assert "timm_adapter" not in code and "timm:" not in code and "import timm" not in code


def test_no_branch_on_a_probe_name_outside_its_package():
    """A probe's name ("dip", "classify") is never compared with or used as a key outside the probes' own packages,
    the probe registry, the metric declarations (which probe measures a metric) and the parsing of a preset's keys
    (the runner's preset dataclass): the rest loops over ``biasprobe.probes.PROBES``."""
    allowed = ("probes/", "studies/runner.py", "analysis/metrics.py")
    names = ("dip", "classify")
    found = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith(allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            keyed = []
            if isinstance(node, ast.Compare):
                keyed = [node.left, *node.comparators]
                keyed += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts]
            elif isinstance(node, ast.Dict):
                keyed = [k for k in node.keys if k is not None]
            elif isinstance(node, ast.Subscript):
                keyed = [node.slice]
            found += [f"{rel}:{k.lineno}" for k in keyed if isinstance(k, ast.Constant) and k.value in names]
    assert found == []
