import numpy as np
import pytest
import torch
from PIL import Image

from biasprobe import seeding
from biasprobe.errors import BiasprobeError
from biasprobe.probes.dip.tasks import (
    LanczosDownsampler,
    lanczos2_kernel,
    list_tasks,
    make_task,
    masked_mse,
    stack_observations,
    task_params,
)

IMG = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))

# Computed with the official deep-image-prior code (models/downsampler.py, commit 042e0d4):
# Downsampler(n_planes=3, factor=f, kernel_type='lanczos2', phase=0.5, preserve_size=True) applied to RAMP.
RAMP = (torch.arange(3 * 16 * 16, dtype=torch.float32).reshape(1, 3, 16, 16) % 17) / 16.0
OFFICIAL = {
    2: ([0.2900470197200775, 0.07767888158559799, 0.25017112493515015, 0.37470659613609314],
        [0.9241893887519836, 0.2909778356552124, 0.0939207375049591]),
    4: ([0.41050976514816284, 0.20773567259311676, 0.5007778406143188, 0.7543548941612244],
        [0.7285146117210388, 0.7078406810760498, 0.19866663217544556]),
}
OFFICIAL_KERNEL2 = ([7.855865548768329e-05, 0.0003717284481795144, -0.0010325790227208734], 0.18861933182592736)


def test_list_and_params():
    assert {"denoise", "inpaint", "sr", "fit", "noise", "jpeg", "blur", "demosaic", "deepinv"} <= set(list_tasks())
    assert task_params("denoise") == {"sigma": 25.0}
    assert task_params("sr")["factor"] == 4


def test_denoise_noise_std_and_seed():
    grey = torch.full((3, 64, 64), 0.5)
    a = make_task("denoise", grey, seed=1, sigma=25)
    noise = a.observed - a.clean
    assert abs(noise.std().item() - 25 / 255) < 0.03 * 25 / 255  # clipping at 0.5 +- 5 sigma is negligible
    assert abs(noise.mean().item()) < 0.005
    b = make_task("denoise", grey, seed=1, sigma=25)
    c = make_task("denoise", grey, seed=2, sigma=25)
    assert torch.equal(a.observed, b.observed) and not torch.equal(a.observed, c.observed)
    assert a.observed.min() >= 0 and a.observed.max() <= 1
    assert torch.equal(make_task("denoise", IMG, sigma=0).observed, IMG[None])
    assert torch.equal(a.baseline, a.observed) and a.mask is None
    with pytest.raises(BiasprobeError, match="sigma"):
        make_task("denoise", IMG, sigma=-1)


def test_denoise_equals_deepinv_gaussian_noise_clipped():
    import deepinv

    obs = make_task("denoise", IMG, seed=3, sigma=25)
    y = deepinv.physics.GaussianNoise(sigma=25 / 255, rng=seeding.generator(3, "observation"))(IMG[None])
    assert torch.equal(y.clamp(0, 1), obs.observed)


def test_inpaint_random_mask_and_loss_sees_known_pixels_only():
    obs = make_task("inpaint", IMG, seed=0, mask="random", drop=0.7)
    m = obs.mask
    assert m.shape == (1, 1, 32, 32) and abs(m.mean().item() - 0.3) < 0.06
    assert torch.equal(obs.observed, IMG[None] * m)
    assert torch.equal(make_task("inpaint", IMG, seed=0, drop=0.7).mask, m)
    assert not torch.equal(make_task("inpaint", IMG, seed=1, drop=0.7).mask, m)
    x = torch.rand(2, 3, 32, 32)
    x2 = x + 5 * (1 - m)  # change only hidden pixels
    assert torch.allclose(obs.loss(x, "none"), obs.loss(x2, "none"))
    ref = (((x - IMG) * m) ** 2).sum((1, 2, 3)) / (3 * m.sum())
    assert torch.allclose(obs.loss(x, "none"), ref)
    assert obs.loss(IMG[None]).item() == 0


def test_inpaint_block_text_file(tmp_path):
    blk = make_task("inpaint", IMG, mask="block", hole=0.5)
    assert blk.mask.sum() == 32 * 32 - 16 * 16 and blk.mask[0, 0, 16, 16] == 0
    txt = make_task("inpaint", IMG, seed=0, mask="text")
    assert 0 < txt.mask.mean() < 1
    assert torch.equal(txt.mask, make_task("inpaint", IMG, seed=5, mask="text").mask)  # no seed dependence
    a = np.full((32, 32), 255, np.uint8)
    a[:4] = 0
    Image.fromarray(a).save(tmp_path / "m.png")
    f = make_task("inpaint", IMG, mask=str(tmp_path / "m.png"))
    assert f.mask.shape == (1, 1, 32, 32) and f.mask[0, 0, :4].sum() == 0 and f.mask[0, 0, 4:].min() == 1
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(BiasprobeError, match="64x64"):
        make_task("inpaint", IMG, mask=str(tmp_path / "big.png"))
    assert make_task("inpaint", IMG, mask=str(tmp_path / "big.png"), size=32).mask.shape == (1, 1, 32, 32)
    with pytest.raises(BiasprobeError, match="hole"):
        make_task("inpaint", IMG, mask="random", hole=0.3)
    with pytest.raises(BiasprobeError, match="drop"):
        make_task("inpaint", IMG, drop=1.0)
    with pytest.raises(BiasprobeError):
        make_task("inpaint", IMG, mask="no_such_mask_file.png")


def test_lanczos_kernel_and_official_reference():
    for f in (2, 4, 8):
        k = lanczos2_kernel(f)
        assert k.shape == (4 * f, 4 * f) and abs(k.sum() - 1) < 1e-12
        assert np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
        const = torch.full((1, 3, 8 * f, 8 * f), 0.37)
        out = LanczosDownsampler(f)(const)
        assert out.shape == (1, 3, 8, 8) and torch.allclose(out, torch.full_like(out, 0.37), atol=1e-6)
    k2 = lanczos2_kernel(2)
    assert np.allclose(k2[0, :3], OFFICIAL_KERNEL2[0], rtol=1e-12) and np.isclose(k2[3, 3], OFFICIAL_KERNEL2[1])
    for f, (row, tail) in OFFICIAL.items():
        out = LanczosDownsampler(f)(RAMP)
        assert out.shape == (1, 3, 16 // f, 16 // f)
        assert torch.allclose(out[0, 0, 0, :4], torch.tensor(row), atol=1e-6)
        assert torch.allclose(out[0, 2, -1, -3:], torch.tensor(tail), atol=1e-6)


def test_sr():
    obs = make_task("sr", IMG, factor=4)
    assert obs.observed.shape == (1, 3, 8, 8) and obs.baseline.shape == (1, 3, 32, 32)
    assert torch.allclose(obs.forward(IMG[None]), obs.observed)
    assert obs.forward(torch.rand(2, 3, 32, 32)).shape == (2, 3, 8, 8)
    assert torch.equal(make_task("sr", IMG, seed=7, factor=4).observed, obs.observed)  # forward ignores the seed
    assert make_task("sr", IMG, factor=2, lr="pil").observed.shape == (1, 3, 16, 16)
    with pytest.raises(BiasprobeError, match="factor"):
        make_task("sr", IMG, factor=3)
    with pytest.raises(BiasprobeError, match="divide"):
        make_task("sr", torch.rand(3, 36, 32), factor=8)


def test_fit_noise_jpeg():
    fit = make_task("fit", IMG)
    assert torch.equal(fit.observed, fit.clean)
    n1, n2 = make_task("noise", IMG, seed=1), make_task("noise", IMG, seed=2)
    assert n1.clean.shape == (1, 3, 32, 32) and not torch.equal(n1.clean, IMG[None])
    assert torch.equal(n1.observed, n1.clean) and not torch.equal(n1.clean, n2.clean)
    assert abs(n1.clean.mean().item() - 0.5) < 0.05
    sh = make_task("noise", IMG, seed=1, kind="shuffle")
    assert torch.allclose(sh.clean.flatten().sort().values, IMG.flatten().sort().values)
    j = make_task("jpeg", IMG)
    assert j.clean is None and torch.equal(j.observed, IMG[None])


def test_deepinv_tasks():
    b = make_task("blur", IMG, seed=0, blur_sigma=1.5, sigma=10)
    assert b.observed.shape == (1, 3, 32, 32) and b.forward(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert b.forward(torch.full((1, 3, 32, 32), 0.4)).sub(0.4).abs().max() < 1e-5  # blur keeps constants
    d = make_task("demosaic", IMG)
    assert d.mask.shape == (1, 3, 32, 32) and abs(d.mask.mean().item() - 1 / 3) < 1e-6
    assert torch.equal(d.observed, IMG[None] * d.mask)
    g = make_task("deepinv", IMG, operator="Inpainting", mask=0.5)
    assert torch.equal(g.forward(IMG[None]), g.observed)
    assert torch.equal(make_task("deepinv", IMG, seed=9, operator="Inpainting", mask=0.5).observed, g.observed)
    with pytest.raises(BiasprobeError, match="Inpainting"):
        make_task("deepinv", IMG, operator="Inpaintin")
    with pytest.raises(BiasprobeError, match="nonsense"):
        make_task("deepinv", IMG, operator="Inpainting", nonsense=1)
    with pytest.raises(BiasprobeError, match="RGB"):
        make_task("demosaic", torch.rand(1, 8, 8))


def test_bad_names_and_params():
    with pytest.raises(BiasprobeError, match="denoise"):
        make_task("denoize", IMG)
    with pytest.raises(BiasprobeError, match="sigmaa"):
        make_task("denoise", IMG, sigmaa=3)
    with pytest.raises(BiasprobeError, match="number"):
        make_task("denoise", IMG, sigma="lots")
    with pytest.raises(BiasprobeError):
        make_task("fit", torch.rand(2, 3, 8, 8))
    assert make_task("denoise", IMG, sigma="50").params["sigma"] == 50.0  # CLI strings are accepted


def test_masked_mse_and_stack():
    p, o = torch.ones(2, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    m = torch.zeros(1, 1, 4, 4)
    m[..., :2, :] = 1
    p[1, :, :2] = 3
    assert torch.allclose(masked_mse(p, o, m), torch.tensor([1.0, 9.0]))
    assert torch.allclose(masked_mse(p, o), torch.tensor([1.0, 5.0]))
    obs = [make_task("denoise", IMG, seed=s) for s in range(3)]
    st = stack_observations(obs)
    assert st.observed.shape == (3, 3, 32, 32) and st.seed == [0, 1, 2]
    assert st.loss(st.observed, "none").abs().max() == 0
    with pytest.raises(BiasprobeError):
        stack_observations([obs[0], make_task("denoise", IMG, sigma=50)])
