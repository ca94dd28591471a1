"""``biasprobe spectrum``: spectral figures of a finished DIP run, or of architectures at initialisation.

    biasprobe spectrum --run runs/<id> [--out DIR]
    biasprobe spectrum --init --arch vit skipnet [--size 128 --seeds 0 1 2] [--out DIR]

``--run`` reads ``curves.parquet`` (long table: step, metric, value [, run_id, seed]) and ``images.npz``
(``clean`` optional, ``observed``, ``best``/``final`` or ``best_seed{k}``/``final_seed{k}``) and draws
``spectrum_fbc.png`` (band x step FBC heatmap), ``spectrum_radial.png`` (radial power spectra of the best
output vs clean vs observed, and their log-amplitude difference) and ``spectrum_grid.png`` (grid energy and
boundary jump over steps). ``--init`` draws the radial power spectra of randomly initialised generators
(``init_spectrum.png``) and writes the table (``init_spectrum.parquet``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from biasprobe.cli.commands import add_arch_module_arg, add_device_arg, load_arch_modules, out_dir
from biasprobe.errors import BiasprobeError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_IMAGE_KEY = re.compile(r"^(best|final)(?:_seed(\d+))?$")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("spectrum", help="spectral figures of a DIP run or of architectures at init",
                              description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run", dest="run_dir", metavar="DIR", help="a finished DIP run directory (runs/<id>)")
    mode.add_argument("--init", action="store_true",
                      help="radial power spectrum of randomly initialised generators (needs --arch)")
    p.add_argument("--arch", nargs="+", help="with --init: registered architecture name(s), hybrids as kc+NAME")
    add_arch_module_arg(p)
    p.add_argument("--size", type=int, default=128, help="with --init: image size H = W (default 128)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="with --init: seeds to average")
    p.add_argument("--input-depth", type=int, default=32, help="with --init: channels of DIP's noise input")
    add_device_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="where to write figures (default: the run dir; with --init: runs/init_spectrum)")
    p.set_defaults(run=run)  # hence --run's dest is run_dir: args.run is the dispatcher's callable


def run(args: argparse.Namespace) -> None:
    if args.init:
        if not args.arch:
            raise BiasprobeError("--init needs --arch NAME [NAME ...] (see `biasprobe archs`)")
        paths = spectrum_init(args)
    else:
        paths = spectrum_run(Path(args.run_dir), out_dir(args.out) if args.out else None)
    for path in paths:
        print(path)


# ----------------------------------------------------------------------------------------------
# --run


def load_run(run_dir: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], str]:
    """curves, images and title (the arch) of a finished DIP run, read by the one run-folder reader
    (:func:`biasprobe.probes.dip.records.load_run`); BiasprobeError if the directory is not one."""
    from biasprobe.probes.dip.records import load_run as read_run

    run = read_run(run_dir, where=f"--run {run_dir}")
    images = run["images"]
    if not images:
        raise BiasprobeError(f"--run {run_dir}: no images.npz; is the run finished? (rerun `biasprobe dip`)")
    if "observed" not in images or not any(_IMAGE_KEY.match(k) for k in images):
        raise BiasprobeError(f"--run {run_dir}: images.npz needs 'observed' and 'best' (or 'best_seed<k>') arrays")
    title = (run["config"].arch if run["config"] is not None else None) or run["meta"].get("arch") or run_dir.name
    return run["curves"], images, str(title)


def outputs_by_seed(images: dict[str, np.ndarray]) -> dict[str, dict[int, np.ndarray]]:
    """``{'best': {seed: img}, 'final': {...}}`` from keys ``best``/``final`` (seed 0) or ``best_seed{k}``."""
    found: dict[str, dict[int, np.ndarray]] = {"best": {}, "final": {}}
    for key, img in images.items():
        m = _IMAGE_KEY.match(key)
        if m:
            found[m.group(1)][int(m.group(2) or 0)] = img
    return found


def spectrum_run(run_dir: Path, out: Path | None = None) -> list[Path]:
    """Draw the three run figures; returns the paths written."""
    import seaborn as sns

    curves, images, title = load_run(run_dir)
    out = out or run_dir
    out.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="paper")
    paths = []
    for draw in (_draw_fbc, _draw_radial, _draw_grid):
        path = draw(curves, images, title, out)
        if path is not None:
            paths.append(path)
    return paths


def _figure(ncols: int, width: float = 5.0, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _fbc_matrix(curves: pd.DataFrame, prefix: str) -> pd.DataFrame:
    import pandas as pd

    band = curves["metric"].astype(str).str.extract(rf"^{prefix}(\d+)$", expand=False)
    df = curves.loc[band.notna(), ["step", "value"]].assign(band=band.dropna().astype(int))
    if df.empty:
        return pd.DataFrame()
    # mean over seeds; band 0 (low) at the bottom
    return df.pivot_table(index="band", columns="step", values="value", aggfunc="mean").sort_index(ascending=False)


def _draw_fbc(curves, images, title, out: Path) -> Path | None:
    import numpy as np
    import seaborn as sns

    from biasprobe.probes.spectral import first_fit_steps

    panels = [(p, label) for p, label in (("fbc_band", "vs clean"), ("fbc_obs_band", "vs observed"))
              if not _fbc_matrix(curves, p).empty]
    if not panels:
        print(f"no fbc_band* metrics in curves.parquet: skipped the FBC heatmap ({out})")
        return None
    fig, axes = _figure(len(panels), width=6.0)
    for ax, (prefix, label) in zip(axes, panels):
        mat = _fbc_matrix(curves, prefix)
        sns.heatmap(mat, ax=ax, vmin=0, vmax=1, cmap="viridis", xticklabels="auto",
                    cbar_kws={"label": "FBC (clipped amplitude ratio)"})
        ax.set(xlabel="iteration", ylabel="frequency band (0 = lowest)", title=f"{title}: FBC {label}")
        first = first_fit_steps(curves, prefix=prefix).groupby("band")["first_step"].median()
        print(f"first step with FBC {label} >= 0.8, per band (median over seeds): "
              + ", ".join(f"band{b}={'never' if np.isnan(s) else int(s)}" for b, s in first.items()))
    path = out / "spectrum_fbc.png"
    fig.savefig(path, dpi=120)
    return path


def _draw_radial(curves, images, title, out: Path) -> Path:
    import pandas as pd
    import seaborn as sns

    from biasprobe.probes.spectral import radial_power_spectrum, relative_log_amplitude

    outputs = outputs_by_seed(images)
    ref_name = "clean" if "clean" in images else "observed"
    rows, rel = [], []
    for name in ("clean", "observed"):
        if name in images:
            f, pw = radial_power_spectrum(images[name])
            rows.append(pd.DataFrame({"image": name, "seed": 0, "freq": f, "power": pw}))
    for kind, by_seed in outputs.items():
        for seed, img in sorted(by_seed.items()):
            f, pw = radial_power_spectrum(img)
            rows.append(pd.DataFrame({"image": kind, "seed": seed, "freq": f, "power": pw}))
            f, d = relative_log_amplitude(img, images[ref_name])
            rel.append(pd.DataFrame({"image": kind, "seed": seed, "freq": f, "diff": d}))
    spec = pd.concat(rows, ignore_index=True)
    spec = spec[spec["freq"] > 0]  # DC (mean brightness) would squash the log axis
    fig, axes = _figure(2)
    sns.lineplot(spec, x="freq", y="power", hue="image", errorbar=None, ax=axes[0])
    axes[0].set(yscale="log", xlabel="radial frequency (cycles/pixel)", ylabel="power",
                title=f"{title}: radial power spectrum (mean over seeds)")
    sns.lineplot(pd.concat(rel, ignore_index=True), x="freq", y="diff", hue="image", errorbar=None, ax=axes[1])
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set(xlabel="radial frequency (cycles/pixel)", ylabel=f"log amplitude - log amplitude of {ref_name}",
                title="relative log amplitude (> 0: more than reference)")
    path = out / "spectrum_radial.png"
    fig.savefig(path, dpi=120)
    return path


def _draw_grid(curves, images, title, out: Path) -> Path | None:
    import seaborn as sns

    panels = []
    for prefix, label in (("grid_energy_p", "grid energy (share; / clean's when known)"),
                          ("boundary_jump_p", "boundary jump (across / inside patches)")):
        df = curves[curves["metric"].astype(str).str.match(rf"^{prefix}\d+$")]
        if not df.empty:
            panels.append((df.assign(period=df["metric"].str.removeprefix(prefix).radd("p = ")), label))
    if not panels:
        print(f"no grid_energy_p*/boundary_jump_p* metrics in curves.parquet: skipped the grid figure ({out})")
        return None
    fig, axes = _figure(len(panels))
    for ax, (df, label) in zip(axes, panels):
        sns.lineplot(df, x="step", y="value", hue="period", errorbar="sd", ax=ax)
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.set(xlabel="iteration", ylabel=label.split(" (")[0], title=f"{title}: {label}")
    path = out / "spectrum_grid.png"
    fig.savefig(path, dpi=120)
    return path


# ----------------------------------------------------------------------------------------------
# --init


def spectrum_init(args: argparse.Namespace) -> list[Path]:
    import pandas as pd
    import seaborn as sns

    from biasprobe.runinfo import resolve_device, write_parquet
    from biasprobe.probes.spectral import init_spectrum

    out = out_dir(args.out or "runs/init_spectrum")
    load_arch_modules(args)
    device = resolve_device(args.device)
    table = pd.concat([init_spectrum(a, args.size, args.seeds, args.input_depth, device=str(device))
                       for a in args.arch], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    table_path = out / "init_spectrum.parquet"
    write_parquet(table_path, table)
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = _figure(1, width=6.0, height=4.2)
    sns.lineplot(table[table["freq"] > 0], x="freq", y="power", hue="arch", ax=axes[0])
    axes[0].set(yscale="log", xlabel="radial frequency (cycles/pixel)", ylabel="power",
                title=f"output of random init, {args.size}x{args.size}, mean of {len(args.seeds)} seeds")
    fig_path = out / "init_spectrum.png"
    fig.savefig(fig_path, dpi=120)
    return [fig_path, table_path]
