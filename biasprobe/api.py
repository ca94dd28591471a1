"""The Python API: the few calls a notebook needs, without the CLI.

    from biasprobe import api

    net = api.build("skipnet", "generator", img_size=(64, 64))                 # an nn.Module
    res = api.fit_dip("skipnet", image="astronaut", size=64, iters=300)        # DIPResult: curves, summary
    curve, summary = api.train_classifier("vit", n_train=500, steps=200)       # needs the CIFAR-10 subset
    report = api.run_study("generative_vs_predictive", "smoke", out="runs/smoke")  # a report folder
    tables = api.load_runs("runs/smoke/store")                                 # pandas DataFrames

Each takes the same names and fields as the CLI (``DIPConfig`` / ``ClassifyConfig`` fields as keyword
arguments), and a bad value raises :class:`biasprobe.BiasprobeError` with the CLI's one-line message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build", "fit_dip", "train_classifier", "run_study", "load_runs"]


def build(arch: str, role: str = "generator", **kw):
    """The network ``arch`` (any registered name, hybrid or ``timm:NAME``) as a ``generator`` (DIP: image in,
    image in [0, 1] out; ``in_chans``, ``out_chans``, ``img_size``) or a ``classifier`` (``num_classes``,
    ``img_size``); other keywords are the architecture's own."""
    from biasprobe.archs.factory import create_classifier, create_generator
    from biasprobe.errors import BiasprobeError

    if role not in ("generator", "classifier"):
        raise BiasprobeError(f"role must be generator or classifier, not {role!r}")
    return (create_generator if role == "generator" else create_classifier)(arch, **kw)


def fit_dip(arch: str, image: str = "astronaut", task: str = "denoise", *, out: str | Path | None = None,
            progress: bool = False, **fields):
    """Fit ``arch`` to ``image`` corrupted by ``task`` (Deep Image Prior), all ``seeds`` at once; ``fields`` are
    :class:`~biasprobe.probes.dip.config.DIPConfig` fields (``size``, ``iters``, ``seeds``, ``lr``,
    ``task_params``, ``stop``, ...). Returns the :class:`~biasprobe.probes.dip.config.DIPResult` (``curves``,
    ``summary``, ``images``); with ``out``, also writes one run folder per seed there, as ``biasprobe dip`` does."""
    from biasprobe.probes.dip import DIPConfig, run_dip, save_result

    result = run_dip(DIPConfig(arch=arch, image=image, task=task, **fields), progress=progress)
    if out is not None:
        save_result(result, Path(out))
    return result


def train_classifier(arch: str, n_train: int = 1000, *, out: str | Path | None = None, progress: bool = False,
                     **fields):
    """Train ``arch``'s classifier from random init on ``n_train`` CIFAR-10 images and measure it; ``fields`` are
    :class:`~biasprobe.probes.classify.train.ClassifyConfig` fields (``steps``, ``seed``, ``lr``, ``data``, ...).
    Returns (curve, summary) as ``run_classify`` does; with ``out``, the run folder is written there."""
    from biasprobe.probes.classify.train import ClassifyConfig, run_classify

    cfg = ClassifyConfig(arch=arch, n_train=n_train, **fields)
    cfg.validate()
    return run_classify(cfg, out_dir=None if out is None else Path(out), progress=progress)


def run_study(study: str, preset: str, *, out: str | Path | None = None, store: str | Path | None = None,
              report_only: bool = False, force: bool = False, quiet: bool = True, **flags) -> Path:
    """Run study ``study`` (``biasprobe study --help`` lists them) under ``preset`` (a packaged name or a JSON
    file) into ``store``, resuming what it holds, and write its report into ``out``; returns the report folder.
    ``flags`` are the command's other options by name (``data="..."``, ``jobs=2``, ``device="cpu"``)."""
    from biasprobe.cli import build_parser

    argv = ["study", study, "--preset", str(preset)]
    for key, value in dict(out=out, store=store, **flags).items():
        if value is None or value is False:
            continue
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    argv += ["--report-only"] * report_only + ["--force"] * force + ["--quiet"] * quiet
    args = build_parser().parse_args(argv)
    args.run(args)
    if out is None:
        from biasprobe.studies import get
        from biasprobe.studies.runner import load_preset

        out = f"reports/{study}-{get(study).prepare(load_preset(str(preset))).name}"  # the command's default
    return Path(out)


def load_runs(store: str | Path) -> dict:
    """A study store's finished runs as pandas DataFrames: ``index`` (one row per run: run_id, status, probe,
    the config's fields) and each probe's tables under the study's names for them (``dip_summary``,
    ``dip_curves``, ``images``, ``clf_summary``, ``clf_epochs``), each with a ``run_id`` column."""
    import pandas as pd

    from biasprobe.probes import PROBES
    from biasprobe.studies.sweep import ResultStore

    root = Path(store)
    results = ResultStore(root / "results" if (root / "results").is_dir() else root)
    index = results.index()
    done = index[index.status == "done"] if len(index) else index
    out = {"index": index}
    for probe in PROBES.values():
        ids = done.run_id[done.probe == probe.name].tolist() if len(done) else []
        for table, key in probe.tables.items():
            out[key] = results.load(table, run_ids=ids) if ids else pd.DataFrame()
    return out
