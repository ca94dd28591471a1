"""Spectral measures on synthetic images with known answers, and the `biasprobe spectrum` command."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage import data, transform

from biasprobe.probes import spectral
from biasprobe.cli import main
from biasprobe.errors import BiasprobeError

N = 64


def sinusoid(fy, fx, shape=(N, N), amp=0.4):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return 0.5 + amp * np.cos(2 * np.pi * (fy * y / shape[0] + fx * x / shape[1]))


def camera(size=128):
    return transform.resize(data.camera() / 255.0, (size, size), anti_aliasing=True)


def with_grid(img, period, amp=0.08):
    g = img.copy()
    g[:, ::period] += amp
    g[::period, :] += amp
    return np.clip(g, 0, 1)


# ---------------------------------------------------------------------------------------------- bands


@pytest.mark.parametrize("f, band", [((0, 3), 0), ((5, 0), 0), ((7, 9), 1), ((12, 0), 1), ((0, 19), 2),
                                     ((-20, 20), 4), ((32, 0), 4), ((32, 32), -1)])
def test_band_of_frequency_by_hand(f, band):
    # rho = hypot(fy, fx) / 32 for a 64x64 image; bands are (k/5, (k+1)/5]; corners beyond rho=1 are -1
    assert spectral.band_of_frequency(*f, (N, N), 5) == band


@pytest.mark.parametrize("f", [(0, 3), (5, 0), (7, 9), (3, -14), (0, 19), (20, 20), (32, 0)])
def test_sinusoid_power_falls_in_its_band(f):
    img = sinusoid(*f)
    power = np.abs(np.fft.fft2(img - img.mean())) ** 2
    masks = spectral.band_masks((N, N), 5)
    share = np.array([power[m].sum() for m in masks]) / power.sum()
    k = spectral.band_of_frequency(*f, (N, N), 5)
    assert share[k] == pytest.approx(1.0, abs=1e-9)
    # and removing that sinusoid from a noisy image lowers the FBC of that band only
    rng = np.random.default_rng(0)
    target = 0.5 * rng.random((N, N)) + 0.5 * img
    got = spectral.fbc(target - 0.5 * (img - 0.5), target)
    assert got[k] < 1 and np.delete(got, k) == pytest.approx(1.0)


def test_band_masks_partition_the_nyquist_disc():
    masks = spectral.band_masks((48, 80), 4)
    assert not (masks.sum(0) > 1).any()
    fy, fx = np.meshgrid(np.fft.fftfreq(48), np.fft.fftfreq(80), indexing="ij")
    assert (masks.any(0) == (np.hypot(fy, fx) <= 0.5 + 1e-12)).all()


# ---------------------------------------------------------------------------------------------- FBC


def test_fbc_of_image_with_itself_is_one():
    rng = np.random.default_rng(1)
    for img in (rng.random((N, N, 3)), camera(64), sinusoid(3, 4), np.full((N, N), 0.3)):
        assert spectral.fbc(img, img) == pytest.approx(np.ones(5))


def test_fbc_of_lowpass_matches_gaussian_transfer_function():
    # circular Gaussian blur multiplies each DFT bin by H(f) = exp(-2 pi^2 sigma^2 |f|^2) <= 1, so the
    # FBC of the blurred image against the original is the band mean of H, whatever the image
    rng = np.random.default_rng(2)
    noise = rng.random((N, N))
    sigma = 1.0
    low = ndimage.gaussian_filter(noise, sigma, mode="wrap", truncate=6)
    got = spectral.fbc(low, noise)
    fy, fx = np.meshgrid(np.fft.fftfreq(N), np.fft.fftfreq(N), indexing="ij")
    h = np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))
    expected = [h[m].mean() for m in spectral.band_masks((N, N), 5)]
    assert got == pytest.approx(expected, abs=0.01)
    assert got[0] > 0.9 and got[-1] < 0.05 and (np.diff(got) < 0).all()


def test_fbc_clips_and_handles_zero_target():
    rng = np.random.default_rng(3)
    target = rng.random((N, N))
    assert spectral.fbc(2 * target, target) == pytest.approx(np.ones(5))  # overshoot clipped to 1
    assert spectral.fbc(np.zeros((N, N)), target) == pytest.approx(np.zeros(5))
    assert np.isfinite(spectral.fbc(target, np.zeros((N, N)))).all()
    # a constant output against a textured target has only the DC term: tiny in every band but 0
    assert (spectral.fbc(np.full((N, N), 0.5), target)[1:] == 0).all()


def test_gray_uses_bt601():
    rgb = np.zeros((4, 4, 3))
    rgb[..., 1] = 1.0
    assert spectral.to_gray(rgb) == pytest.approx(np.full((4, 4), 0.587))
    with pytest.raises(ValueError):
        spectral.to_gray(np.zeros((4, 4, 4)))


# ---------------------------------------------------------------------------------------------- spectra


def test_radial_power_spectrum_peaks_at_sinusoid_and_obeys_parseval():
    img = sinusoid(0, 10)
    freqs, power = spectral.radial_power_spectrum(img)
    assert freqs[0] == 0 and freqs[-1] == 0.5
    assert freqs[1:][np.argmax(power[1:])] == pytest.approx(10 / N)
    rng = np.random.default_rng(4)
    noise = rng.random((N, N)) - 0.5
    f, p = spectral.radial_power_spectrum(noise)
    # white noise: flat spectrum at the variance
    assert np.median(p[1:]) == pytest.approx(noise.var(), rel=0.15)


def test_relative_log_amplitude():
    cam = camera(64)
    f, d = spectral.relative_log_amplitude(cam, cam)
    assert f[0] > 0 and d == pytest.approx(np.zeros_like(d))
    f, d = spectral.relative_log_amplitude(ndimage.gaussian_filter(cam, 1.5, mode="wrap"), cam)
    assert d[-5:].max() < -1  # blur loses high-frequency amplitude
    f, d = spectral.relative_log_amplitude(with_grid(cam, 8, 0.2), cam)
    assert d[np.argmin(np.abs(f - 1 / 8))] > 0.1  # grid lines add amplitude at 1/period


# ---------------------------------------------------------------------------------------------- grid


def test_grid_energy_of_checkerboard_at_its_period_not_at_coprime_one():
    y, x = np.mgrid[:56, :56]
    board = ((y // 4 + x // 4) % 2).astype(float)  # period 8; 56 = 7 * 8
    assert spectral.grid_energy(board, 8) == pytest.approx(1.0)
    assert spectral.grid_energy(board, 7) == pytest.approx(0.0, abs=1e-12)


def test_grid_energy_of_smooth_gradient_is_small():
    ramp = np.add.outer(np.linspace(0, 0.5, N), np.linspace(0, 0.5, N))
    assert spectral.grid_energy(ramp, 8) < 0.05
    assert spectral.grid_energy(np.full((N, N), 0.2), 8) == 0.0


def test_grid_energy_relative_to_clean():
    cam = camera(128)
    power = np.abs(np.fft.fft2(cam)) ** 2
    mask = spectral.grid_mask(cam.shape, 8)
    assert mask.sum() == 2 * 7 * 128 - 7 * 7 and not mask[0, 0]
    assert spectral.grid_energy(cam, 8) == pytest.approx(power[mask].sum() / (power.sum() - power[0, 0]))
    assert spectral.grid_energy(cam, 8, ref=cam) == pytest.approx(1.0)
    assert spectral.grid_energy(with_grid(cam, 8), 8, ref=cam) > 1.5
    with pytest.raises(BiasprobeError):
        spectral.grid_energy(cam, 7)  # 7 does not divide 128


def test_boundary_jump_natural_vs_grid():
    cam = camera(128)
    for p in (8, 16):
        assert 0.85 < spectral.boundary_jump(cam, p) < 1.15
    gridded = with_grid(cam, 8)
    assert spectral.boundary_jump(gridded, 8) > 1.5
    assert spectral.boundary_jump(gridded, 7) < 1.15  # lines every 8 px are not on a 7-px grid
    # blocky patches (piecewise constant on 8x8 blocks plus fine texture) jump only at boundaries
    rng = np.random.default_rng(5)
    blocks = np.kron(rng.random((16, 16)), np.ones((8, 8))) * 0.3 + 0.05 * rng.random((128, 128))
    assert spectral.boundary_jump(blocks, 8) > 3
    assert spectral.boundary_jump(np.full((32, 32), 0.5), 8) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- metrics, tables


def test_spectral_metrics_keys_and_consistency():
    rng = np.random.default_rng(6)
    clean = np.stack([camera(64)] * 3, -1)
    observed = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1)
    output = with_grid(clean, 8)
    m = spectral.spectral_metrics(output, clean, observed, {"patch": 8, "window": 16})
    assert set(m) == ({f"fbc_band{k}" for k in range(5)} | {f"fbc_obs_band{k}" for k in range(5)}
                      | {"grid_energy_p8", "boundary_jump_p8", "grid_energy_p16", "boundary_jump_p16"})
    assert [m[f"fbc_band{k}"] for k in range(5)] == pytest.approx(spectral.fbc(output, clean))
    assert [m[f"fbc_obs_band{k}"] for k in range(5)] == pytest.approx(spectral.fbc(output, observed))
    assert m["grid_energy_p8"] == pytest.approx(spectral.grid_energy(output, 8, ref=clean))
    assert m["boundary_jump_p8"] == pytest.approx(spectral.boundary_jump(output, 8))
    m = spectral.spectral_metrics(output, None, observed, [8])
    assert "fbc_band0" not in m and m["grid_energy_p8"] == pytest.approx(spectral.grid_energy(output, 8))


def test_first_fit_steps_on_hand_made_table():
    rows = []
    for seed, curves in ((0, {0: [0.5, 0.85, 0.9], 1: [0.1, 0.5, 0.8], 2: [0.1, 0.2, 0.3]}),
                         (1, {0: [0.9, 0.9, 0.9], 1: [0.1, 0.1, 0.79], 2: [0.1, 0.9, 0.1]})):
        for band, values in curves.items():
            for step, v in zip((0, 100, 200), values):
                rows.append({"run_id": "r", "seed": seed, "step": step, "metric": f"fbc_band{band}", "value": v})
                rows.append({"run_id": "r", "seed": seed, "step": step, "metric": "psnr_gt", "value": 30.0})
                rows.append({"run_id": "r", "seed": seed, "step": step, "metric": f"fbc_obs_band{band}",
                             "value": 1.0})
    got = spectral.first_fit_steps(pd.DataFrame(rows), threshold=0.8)
    assert list(got.columns) == ["run_id", "seed", "band", "first_step"]
    expected = {(0, 0): 100, (0, 1): 200, (0, 2): np.nan, (1, 0): 0, (1, 1): np.nan, (1, 2): 100}
    for (seed, band), step in expected.items():
        value = got.query("seed == @seed and band == @band")["first_step"].item()
        assert (np.isnan(value) and np.isnan(step)) or value == step
    obs = spectral.first_fit_steps(pd.DataFrame(rows), prefix="fbc_obs_band")
    assert (obs["first_step"] == 0).all() and len(obs) == 6


# ---------------------------------------------------------------------------------------------- command


def fabricate_run(run_dir, seeds=(0, 1), with_clean=True, size=32):
    rng = np.random.default_rng(7)
    clean = np.stack([camera(size)] * 3, -1).astype(np.float32)
    observed = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    rows, images = [], {"observed": observed}
    if with_clean:
        images["clean"] = clean
    for seed in seeds:
        for step in range(0, 50, 10):
            out = np.clip(ndimage.gaussian_filter(clean, (3 - step / 20, 3 - step / 20, 0)) + 0.01 * seed, 0, 1)
            m = spectral.spectral_metrics(out, clean if with_clean else None, observed, {"patch": 8})
            m["psnr_obs"] = 20.0 + step / 10
            rows += [{"run_id": "fake", "seed": seed, "step": step, "metric": k, "value": v} for k, v in m.items()]
        key = f"_seed{seed}" if len(seeds) > 1 else ""
        images[f"best{key}"], images[f"final{key}"] = out, out
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"arch": "skipnet"}))
    pd.DataFrame(rows).to_parquet(run_dir / "curves.parquet")
    np.savez(run_dir / "images.npz", **images)
    return run_dir


@pytest.mark.parametrize("seeds, with_clean", [((0, 1), True), ((0,), False)])
def test_spectrum_run_command_draws_pngs(tmp_path, capsys, seeds, with_clean):
    run_dir = fabricate_run(tmp_path / "run", seeds, with_clean)
    assert main(["spectrum", "--run", str(run_dir), "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    for name in ("spectrum_fbc.png", "spectrum_radial.png", "spectrum_grid.png"):
        path = tmp_path / "figs" / name
        assert path.is_file() and path.stat().st_size > 5000 and str(path) in printed
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_spectrum_run_command_errors(tmp_path, capsys):
    assert main(["spectrum", "--run", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["spectrum", "--run", str(tmp_path / "empty")]) == 2
    assert main(["spectrum", "--init"]) == 2
    err = capsys.readouterr().err
    assert err.count("biasprobe: error:") == 3 and "curves.parquet" in err and "--arch" in err


SMALL_SKIP = dict(num_scales=3, channels_down=16, channels_up=16)


def test_init_spectrum_skipnet_is_deterministic():
    a = spectral.init_spectrum("skipnet", 32, seeds=[0, 1], input_depth=8, **SMALL_SKIP)
    b = spectral.init_spectrum("skipnet", 32, seeds=[0, 1], input_depth=8, **SMALL_SKIP)
    assert list(a.columns) == ["arch", "freq", "power"] and len(a) == 17
    assert (a["power"] > 0).all()
    pd.testing.assert_frame_equal(a, b)
    c = spectral.init_spectrum("skipnet", 32, seeds=[2], input_depth=8, **SMALL_SKIP)
    assert not np.allclose(a["power"], c["power"])


def test_spectrum_init_command(tmp_path, capsys):
    assert main(["spectrum", "--init", "--arch", "skipnet", "--size", "64", "--seeds", "0", "--input-depth", "8",
                 "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "init_spectrum.png").is_file()
    assert pd.read_parquet(tmp_path / "init_spectrum.parquet")["arch"].eq("skipnet").all()
