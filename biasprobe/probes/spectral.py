"""Spectral measures of a reconstruction: which frequencies a net fits, and whether it draws a patch grid.

Pure functions on numpy arrays (``scipy.fft``), except :func:`init_spectrum` at the bottom, which builds
networks with torch. Images are ``HxW`` or ``HxWxC`` float arrays in [0, 1]; colour images are reduced to
luma with the ITU-R BT.601 weights ``Y = 0.299 R + 0.587 G + 0.114 B`` (:func:`to_gray`).

Frequencies are in cycles per pixel, ``f = k / N`` for FFT index ``k`` (``numpy.fft.fftfreq``), so the
Nyquist frequency is 0.5 on each axis and the *normalised radius* is ``rho = sqrt(fy^2 + fx^2) / 0.5``
(``rho = 1`` is the Nyquist circle; the corners beyond it, up to ``rho = sqrt(2)``, are left out of
every radial measure, as in Shi et al.'s code). The FFT is never ``fftshift``-ed: centring moves
values around but changes no average over a set of frequencies.

Measures (formulas in each docstring):

* :func:`fbc` frequency-band correspondence (Shi et al., IJCV 2022) per annulus, low to high.
* :func:`radial_power_spectrum`, :func:`relative_log_amplitude` (Park & Kim, ICLR 2022 style).
* :func:`grid_energy` share of power on the rows/columns a period-``p`` grid excites;
  :func:`boundary_jump` neighbour differences across patch boundaries over those inside patches.
* :func:`spectral_metrics` what the DIP loop logs at a log step (one FFT per image).
* :func:`first_fit_steps` the step at which each band's FBC first reaches a threshold.
* :func:`init_spectrum` radial power spectrum of randomly initialised generators (torch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import fft as sfft

from biasprobe.errors import BiasprobeError

LUMA_601 = np.array([0.299, 0.587, 0.114])
_EDGE_TOL = 1e-9  # slack on annulus edges so a frequency exactly on an edge lands in the lower band
_TINY = 1e-12  # relative size below which a Fourier magnitude counts as zero


# ----------------------------------------------------------------------------------------------
# Basics


def to_gray(img: np.ndarray) -> np.ndarray:
    """``HxW`` float64 luma of an ``HxW``, ``HxWx1`` or ``HxWx3`` image: ``Y = 0.299 R + 0.587 G + 0.114 B``
    (ITU-R BT.601, the weights of MATLAB's ``rgb2gray`` and PIL's ``convert('L')``)."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[2] == 1:
        return a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 3:
        return a @ LUMA_601
    raise ValueError(f"expected an HxW, HxWx1 or HxWx3 image, got shape {a.shape}")


def _magnitude(gray: np.ndarray) -> np.ndarray:
    """``|F(I)|``, the unshifted 2-D DFT magnitude (``scipy.fft.fft2``, no normalisation)."""
    return np.abs(sfft.fft2(gray))


@lru_cache(maxsize=64)
def _rho(shape: tuple[int, int]) -> np.ndarray:
    """Normalised radius ``rho = sqrt(fy^2 + fx^2) / 0.5`` of each DFT bin (unshifted layout)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    rho = np.hypot(fy, fx) / 0.5
    rho.setflags(write=False)
    return rho


def _band_from_rho(rho, n_bands: int):
    """Annulus index ``k`` with ``k/n < rho <= (k+1)/n`` (DC in band 0), or -1 beyond the Nyquist circle."""
    rho = np.asarray(rho, dtype=np.float64)
    band = np.ceil(rho * n_bands - _EDGE_TOL).astype(np.int64) - 1
    band = np.where(rho <= _EDGE_TOL, 0, band)
    return np.where(rho > 1 + _EDGE_TOL, -1, band)


@lru_cache(maxsize=64)
def _band_index(shape: tuple[int, int], n_bands: int) -> np.ndarray:
    band = _band_from_rho(_rho(shape), n_bands)
    band.setflags(write=False)
    return band


def band_of_frequency(fy: int, fx: int, shape: tuple[int, int], n_bands: int = 5) -> int:
    """The FBC band (0 = lowest) holding DFT index ``(fy, fx)`` of an image of ``shape`` (H, W), or -1.

    ``fy, fx`` are signed integer frequencies in cycles per image height/width, so the sinusoid
    ``cos(2 pi (fy y / H + fx x / W))`` sits at ``(fy, fx)``. Its normalised radius is
    ``rho = sqrt((fy/H)^2 + (fx/W)^2) / 0.5`` and its band is ``k`` with ``k/n < rho <= (k+1)/n``
    (upper edge inclusive, DC in band 0, as ``dist <= radius`` in Shi et al.'s code); -1 when
    ``rho > 1`` (a corner beyond the Nyquist circle, which no band covers).
    """
    h, w = shape[:2]
    rho = np.hypot(fy / h, fx / w) / 0.5
    return int(_band_from_rho(rho, n_bands))


def band_masks(shape: tuple[int, int], n_bands: int = 5) -> np.ndarray:
    """``(n_bands, H, W)`` boolean masks of the FBC annuli in the *unshifted* DFT layout (see :func:`fbc`)."""
    band = _band_index(tuple(shape[:2]), n_bands)
    return np.stack([band == k for k in range(n_bands)])


# ----------------------------------------------------------------------------------------------
# Frequency-band correspondence


def _fbc_from_magnitudes(mag_out: np.ndarray, mag_tgt: np.ndarray, n_bands: int) -> np.ndarray:
    ratio = np.ones_like(mag_tgt)
    nonzero = mag_tgt > _TINY * max(float(mag_tgt.max()), np.finfo(float).tiny)
    np.divide(mag_out, mag_tgt, out=ratio, where=nonzero)
    np.clip(ratio, 0.0, 1.0, out=ratio)
    labels, counts = _band_labels(mag_tgt.shape, n_bands)
    sums = np.bincount(labels, weights=ratio.ravel(), minlength=n_bands + 1)[:n_bands]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts  # a band with no DFT bin (tiny images, many bands) is NaN


@lru_cache(maxsize=64)
def _band_labels(shape: tuple[int, int], n_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat band labels for np.bincount (corners beyond Nyquist -> extra label n_bands) and bins per band."""
    band = _band_index(shape, n_bands)
    labels = np.where(band >= 0, band, n_bands).ravel()
    counts = np.bincount(labels, minlength=n_bands + 1)[:n_bands]
    labels.setflags(write=False)
    counts.setflags(write=False)
    return labels, counts


def fbc(output: np.ndarray, target: np.ndarray, n_bands: int = 5) -> np.ndarray:
    """Frequency-band correspondence of ``output`` to ``target``, one value per band, low to high.

    Shi, Mettes, Maji & Snoek, "On Measuring and Controlling the Spectral Bias of the Deep Image
    Prior", IJCV 2022 (Sec. 3; ``get_circular_statastic`` in their code)::

        r(f)    = clip(|F(output)(f)| / |F(target)(f)|, 0, 1)          per DFT bin f, luma images
        FBC_k   = mean{ r(f) : k/n < rho(f) <= (k+1)/n }                k = 0 .. n-1

    with ``rho`` the normalised radius (1 = Nyquist circle; bands are equal-width rings *inside the
    Nyquist circle*, the corners beyond it are not used, as in their code). FBC_k = 1 means the output
    has at least the target's amplitude at every frequency of band k; DIP fits low bands first.

    Zeros: where ``|F(target)| <= 1e-12 max|F(target)|`` the ratio is taken as 1 (both zero: they
    agree; output non-zero: the clip would cap the infinite ratio at 1 anyway). Shi et al. instead
    add 1e-8 to the denominator, which scores two matching zeros as 0.
    """
    go, gt = to_gray(output), to_gray(target)
    if go.shape != gt.shape:
        raise ValueError(f"output {go.shape} and target {gt.shape} differ in size")
    return _fbc_from_magnitudes(_magnitude(go), _magnitude(gt), n_bands)


# ----------------------------------------------------------------------------------------------
# Radial spectra


@lru_cache(maxsize=64)
def _radial_bins(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Radial bin of each DFT bin: ``round(r * min(H, W))`` with ``r`` in cycles/pixel, -1 beyond Nyquist."""
    n = min(shape)
    r = _rho(shape) * 0.5
    b = np.rint(r * n).astype(np.int64)
    b[b > n // 2] = -1
    freqs = np.arange(n // 2 + 1) / n
    b.setflags(write=False)
    freqs.setflags(write=False)
    return b, freqs


def _radial_mean(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b, freqs = _radial_bins(values.shape)
    inside = b >= 0
    sums = np.bincount(b[inside], weights=values[inside], minlength=len(freqs))
    counts = np.bincount(b[inside], minlength=len(freqs))
    keep = counts > 0
    return freqs[keep], sums[keep] / counts[keep]


def radial_power_spectrum(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of the luma image: ``(freqs, power)``.

    ``P(f) = |F(I)(f)|^2 / (H W)`` (so that ``mean_f P = mean_x I^2``, Parseval), averaged over the
    DFT bins whose radius ``r = sqrt(fy^2 + fx^2)`` (cycles/pixel) rounds to ``freq = j / min(H, W)``,
    ``j = 0 .. min(H, W) // 2`` (up to the Nyquist circle; ``freqs[0] = 0`` is the DC term, the squared
    mean brightness times H W). The standard radially averaged spectrum (e.g. van der Schaaf & van
    Hateren 1996; natural images fall off roughly as ``1 / f^2``).
    """
    g = to_gray(img)
    return _radial_mean(_magnitude(g) ** 2 / g.size)


def relative_log_amplitude(img: np.ndarray, ref: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Log-amplitude difference along radial frequency: ``(freqs, log A_img(f) - log A_ref(f))``, DC removed.

    ``A(f)`` is the radially averaged DFT amplitude ``|F(I)|`` (bins as :func:`radial_power_spectrum`,
    natural log, ``eps`` against log 0); the DC bin (mean brightness) is dropped. Positive values: the
    image has more amplitude than the reference at that frequency (noise, grid lines); negative: less
    (blur). After Park & Kim, "How Do Vision Transformers Work?", ICLR 2022 (Fig. 2, relative log
    amplitudes of Fourier-transformed maps); they difference against each map's own DC term, here we
    difference against a reference image at the same frequency.
    """
    gi, gr = to_gray(img), to_gray(ref)
    if gi.shape != gr.shape:
        raise ValueError(f"image {gi.shape} and reference {gr.shape} differ in size")
    freqs, a_img = _radial_mean(_magnitude(gi))
    _, a_ref = _radial_mean(_magnitude(gr))
    diff = np.log(a_img + eps) - np.log(a_ref + eps)
    return freqs[1:], diff[1:]


# ----------------------------------------------------------------------------------------------
# Patch-grid artefacts


def _check_period(shape: tuple[int, int], period: int, divides: bool) -> int:
    p = int(period)
    h, w = shape
    if p < 2 or p >= min(h, w):
        raise BiasprobeError(f"grid period {period} does not fit a {h}x{w} image: use 2 <= period < {min(h, w)}")
    if divides and (h % p or w % p):
        raise BiasprobeError(f"grid period {p} does not divide the {h}x{w} image: use a period that divides H and W")
    return p


def _grid_freqs(shape: tuple[int, int], period: int) -> tuple[list[int], list[int]]:
    """DFT rows ``k H / p`` and columns ``k W / p``, k = 1 .. p-1, that a period-``p`` grid excites."""
    h, w = shape
    return [k * h // period for k in range(1, period)], [k * w // period for k in range(1, period)]


def grid_mask(shape: tuple[int, int], period: int) -> np.ndarray:
    """Boolean ``HxW`` mask (unshifted DFT layout) of the bins a period-``p`` grid excites (see :func:`grid_energy`)."""
    shape = tuple(shape[:2])
    rows, cols = _grid_freqs(shape, _check_period(shape, period, divides=True))
    mask = np.zeros(shape, dtype=bool)
    mask[rows, :] = True
    mask[:, cols] = True
    return mask


def _grid_share(power: np.ndarray, period: int, row_sums=None, col_sums=None) -> float:
    """Power on whole rows + whole columns - their crossings, over the non-DC total (sums may be cached)."""
    row_sums = power.sum(axis=1) if row_sums is None else row_sums
    col_sums = power.sum(axis=0) if col_sums is None else col_sums
    total = float(row_sums.sum() - power[0, 0])
    if total <= 1e-12 * max(float(power[0, 0]), 1.0):
        return 0.0  # a constant image has no structure, hence no grid
    rows, cols = _grid_freqs(power.shape, period)
    on_grid = row_sums[rows].sum() + col_sums[cols].sum() - power[np.ix_(rows, cols)].sum()
    return float(on_grid) / total


def grid_energy(img: np.ndarray, period: int, ref: np.ndarray | None = None) -> float:
    """Share of the (non-DC) spectral power on the frequencies a period-``p`` grid produces.

    Anything periodic with period ``p`` along x (vertical grid lines, patch-wise offsets) has DFT
    support only on columns ``kx = k W / p``; along y, on rows ``ky = k H / p``. So with
    ``G = {(ky, kx): ky in {H/p, 2H/p, .., (p-1)H/p} or kx in {W/p, .., (p-1)W/p}}`` (whole rows and
    columns, which also catches grid lines modulated by the image content)::

        share(I) = sum_{f in G} |F(I)(f)|^2 / sum_{f != 0} |F(I)(f)|^2

    returned as is, or as ``share(img) / share(ref)`` when a clean reference is given (> 1: more
    energy on the grid frequencies than the clean image has). ``p`` must divide H and W.
    A constant image has share 0; a clean reference with share 0 gives NaN.

    Caveat: white noise spreads evenly, so its share equals the mask's area fraction,
    ``(2 (p-1) N - (p-1)^2) / N^2`` for an NxN image (about 0.10 for p = 8, N = 128), above a natural
    image's; a noisy output therefore scores > 1 against its clean image without any grid.
    :func:`boundary_jump` does not have this confound.
    """
    g = to_gray(img)
    p = _check_period(g.shape, period, divides=True)
    share = _grid_share(_magnitude(g) ** 2, p)
    if ref is None:
        return share
    gr = to_gray(ref)
    if gr.shape != g.shape:
        raise ValueError(f"image {g.shape} and reference {gr.shape} differ in size")
    share_ref = _grid_share(_magnitude(gr) ** 2, p)
    return share / share_ref if share_ref > 0 else float("nan")


def boundary_jump(img: np.ndarray, period: int, eps: float = 1e-12) -> float:
    """Mean absolute neighbour difference across patch boundaries over the mean inside patches.

    With luma ``I``, horizontal differences ``d = |I[:, j+1] - I[:, j]|`` are *across a boundary* when
    ``j + 1`` is a multiple of ``p`` (pixels ``p k - 1`` and ``p k``) and *inside* otherwise; the same
    for vertical differences. Both directions are pooled::

        jump = (mean of boundary differences + eps) / (mean of inside differences + eps)

    About 1 for a natural image (nothing special happens every p pixels); > 1 with grid lines or
    blocky patches (the spatial-domain twin of :func:`grid_energy`, as blockiness measures for JPEG,
    e.g. Wang, Bovik & Evans, ICIP 2000). Noise raises both means alike. A constant image gives 1.
    """
    g = to_gray(img)
    p = _check_period(g.shape, period, divides=False)
    return _jump(_neighbour_sums(g), g.shape, p, eps)


def _neighbour_sums(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column sums of ``|I[:, j+1] - I[:, j]|`` (length W-1) and per-row sums of vertical ones (H-1)."""
    return np.abs(np.diff(g, axis=1)).sum(axis=0), np.abs(np.diff(g, axis=0)).sum(axis=1)


def _jump(sums: tuple[np.ndarray, np.ndarray], shape: tuple[int, int], p: int, eps: float = 1e-12) -> float:
    col_sums, row_sums = sums
    h, w = shape
    bx = (np.arange(1, w) % p) == 0  # pair (j, j+1) crosses a boundary when j+1 is a multiple of p
    by = (np.arange(1, h) % p) == 0
    b_mean = (col_sums[bx].sum() + row_sums[by].sum()) / (h * bx.sum() + w * by.sum())
    i_mean = (col_sums[~bx].sum() + row_sums[~by].sum()) / (h * (~bx).sum() + w * (~by).sum())
    return float((b_mean + eps) / (i_mean + eps))


# ----------------------------------------------------------------------------------------------
# What the DIP loop logs


def _period_list(periods) -> list[int]:
    if periods is None:
        return []
    values = periods.values() if isinstance(periods, Mapping) else periods
    return sorted({int(p) for p in values})


def spectral_metrics(
    output: np.ndarray,
    clean: np.ndarray | None,
    observed: np.ndarray | None,
    periods: Mapping[str, int] | Iterable[int] | None = None,
    n_bands: int = 5,
) -> dict[str, float]:
    """The spectral numbers of one reconstruction, for the DIP loop's long table. One FFT per image.

    * ``fbc_band{k}``: :func:`fbc` of ``output`` against ``clean`` (left out when ``clean`` is None);
    * ``fbc_obs_band{k}``: :func:`fbc` against the observation (left out when ``observed`` is None);
    * ``grid_energy_p{p}``: :func:`grid_energy` share, divided by the clean image's share when
      ``clean`` is given (so 1 = as much grid-frequency energy as the clean image);
    * ``boundary_jump_p{p}``: :func:`boundary_jump` of ``output``.

    ``periods`` maps names (e.g. ``{"patch": 16}``, names only label them) to grid periods in pixels,
    or is a plain list of periods; metric names use the period, duplicates count once.
    """
    go = to_gray(output)
    mag_out = _magnitude(go)
    power_out = mag_out**2
    mag_clean = None
    out: dict[str, float] = {}
    if clean is not None:
        gc = to_gray(clean)
        if gc.shape != go.shape:
            raise ValueError(f"output {go.shape} and clean {gc.shape} differ in size")
        mag_clean = _magnitude(gc)
        for k, v in enumerate(_fbc_from_magnitudes(mag_out, mag_clean, n_bands)):
            out[f"fbc_band{k}"] = float(v)
    if observed is not None:
        gb = to_gray(observed)
        if gb.shape != go.shape:
            raise ValueError(f"output {go.shape} and observed {gb.shape} differ in size")
        for k, v in enumerate(_fbc_from_magnitudes(mag_out, _magnitude(gb), n_bands)):
            out[f"fbc_obs_band{k}"] = float(v)
    sums_out = (power_out.sum(axis=1), power_out.sum(axis=0))
    if mag_clean is not None:
        power_clean = mag_clean**2
        sums_clean = (power_clean.sum(axis=1), power_clean.sum(axis=0))
    neighbours = _neighbour_sums(go)
    for p in _period_list(periods):
        _check_period(go.shape, p, divides=True)
        share = _grid_share(power_out, p, *sums_out)
        if mag_clean is not None:
            share_ref = _grid_share(power_clean, p, *sums_clean)
            share = share / share_ref if share_ref > 0 else float("nan")
        out[f"grid_energy_p{p}"] = share
        out[f"boundary_jump_p{p}"] = _jump(neighbours, go.shape, p)
    return out


# ----------------------------------------------------------------------------------------------
# Tables


_ID_COLUMNS = ("run_id", "seed")


def first_fit_steps(
    fbc_table: pd.DataFrame, threshold: float = 0.8, prefix: str = "fbc_band", by: Iterable[str] | None = None
) -> pd.DataFrame:
    """For each band, the first step at which its FBC reaches ``threshold`` (NaN if it never does).

    Reads a long table with columns ``step, metric, value`` where metrics ``{prefix}{k}`` (default
    ``fbc_band{k}``; ``fbc_obs_band`` for the observation) hold band k's FBC. Groups by ``by``
    (default: whichever of ``run_id``, ``seed`` are present) and band::

        first_step(group, k) = min{ step : value >= threshold }

    Returns a tidy frame with columns ``*by, band, first_step`` (float, NaN where never reached),
    sorted. Shi et al. read the same off their FBC curves: low bands are fitted first.
    """
    missing = {"step", "metric", "value"} - set(fbc_table.columns)
    if missing:
        raise ValueError(f"fbc_table lacks columns {sorted(missing)}")
    keys = [c for c in (_ID_COLUMNS if by is None else by) if c in fbc_table.columns]
    band = fbc_table["metric"].astype(str).str.extract(rf"^{re.escape(prefix)}(\d+)$", expand=False)
    df = fbc_table.loc[band.notna(), keys + ["step", "value"]].assign(band=band.dropna().astype(int))
    groups = keys + ["band"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in groups + ["first_step"]})
    reached = df[df["value"] >= threshold].groupby(groups, dropna=False)["step"].min()
    every = df.groupby(groups, dropna=False).size().index
    result = reached.reindex(every).astype(float).rename("first_step").reset_index()
    return result.sort_values(groups, ignore_index=True)


# ----------------------------------------------------------------------------------------------
# Spectrum at initialisation (torch)


def init_spectrum(
    arch: str,
    size: int | tuple[int, int] = 128,
    seeds: Iterable[int] = (0, 1, 2),
    input_depth: int = 32,
    device: str = "cpu",
    **kw,
) -> pd.DataFrame:
    """Radial power spectrum of a randomly initialised generator's output, averaged over seeds.

    For each seed: the net as a DIP run of that seed builds it (``dip.build_nets``: the seed's ``init`` stream) and
    DIP's 'noise' input ``z = U(0, 1) * 0.1`` of shape ``(1, input_depth, H, W)`` (``dip.make_input``: the seed's
    ``input`` stream; Ulyanov et al. 2018, ``get_noise(..., 'noise', var=1/10)``); one forward pass in train mode (BatchNorm uses the batch
    statistics, as in DIP fitting) without gradients; :func:`radial_power_spectrum` of the output.
    Returns the tidy table ``arch, freq, power`` (power = mean over seeds, DC at freq 0 included).
    """
    import torch

    from biasprobe import seeding
    from biasprobe.archs.factory import check_size, create_generator

    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    check_size(arch, (h, w), **kw)
    seeds = list(seeds)
    if not seeds:
        raise BiasprobeError("init_spectrum needs at least one seed (e.g. --seeds 0 1 2)")
    powers = []
    for seed in seeds:
        with seeding.manual_seed(seed, "init"):
            net = create_generator(arch, in_chans=input_depth, out_chans=3, img_size=(h, w), **kw).to(device)
        net.train()
        z = (torch.rand(1, input_depth, h, w, generator=seeding.generator(seed, "input")) * 0.1).to(device)
        with torch.no_grad():
            img = net(z)[0].permute(1, 2, 0).double().cpu().numpy()
        freqs, power = radial_power_spectrum(img)
        powers.append(power)
    return pd.DataFrame({"arch": arch, "freq": freqs, "power": np.mean(powers, axis=0)})
