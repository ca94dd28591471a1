"""Independent random streams: every purpose of a run draws from its own stream of the seed (seeding.py)."""

import math

import numpy as np
import pytest
import torch

from biasprobe import seeding
from biasprobe.probes.dip import tasks
from biasprobe.probes.dip import DIPConfig, build_nets, make_input, prepare_image, run_dip


def test_streams_differ_by_purpose_and_seed_and_repeat():
    seeds = {(s, p): seeding.stream_seed(s, p) for s in (0, 1, 2) for p in seeding.PURPOSES}
    assert len(set(seeds.values())) == len(seeds)  # no two (seed, purpose) pairs share a stream
    assert seeding.stream_seed(1, "input") == seeding.stream_seed(1, "input")
    assert all(0 <= v < 2**63 for v in seeds.values())
    assert len(set(seeding.PURPOSES.values())) == len(seeding.PURPOSES)
    with pytest.raises(KeyError):
        seeding.stream_seed(0, "inputs")


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_dip_input_and_observation_noise_are_uncorrelated(seed):
    # the confound this scheme removes: with one seeded generator for both, the N(0, 1) noise was a function of
    # the U(0, 1) input and channels correlated up to |r| = 0.36
    clean = torch.full((1, 3, 128, 128), 0.5)  # mid-grey: the clip never bites, observed - clean is the noise
    noise = tasks.make_task("denoise", clean, seed, sigma=25).observed - clean
    z = make_input("noise", 32, (128, 128), seed)
    worst = max(abs(_corr(z[0, i], noise[0, c])) for i in range(32) for c in range(3))
    assert worst < 0.05
    # the same for the noise the old scheme shared with the input channel by channel (first draws)
    assert abs(_corr(z[0, :3], noise[0])) < 0.05


def test_each_draw_changes_only_with_its_own_stream(monkeypatch):
    clean = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    z = make_input("noise", 4, (32, 32), 0)
    noisy = tasks.make_task("denoise", clean, 0, sigma=25).observed
    masked = tasks.make_task("inpaint", clean, 0, mask="random", drop=0.5).mask
    # change the observation stream only: the noise changes, the input and the mask do not
    real = seeding.stream_seed
    monkeypatch.setattr(seeding, "stream_seed",
                        lambda s, p: real(s + 100, p) if p == "observation" else real(s, p))
    assert torch.equal(make_input("noise", 4, (32, 32), 0), z)
    assert not torch.equal(tasks.make_task("denoise", clean, 0, sigma=25).observed, noisy)
    assert torch.equal(tasks.make_task("inpaint", clean, 0, mask="random", drop=0.5).mask, masked)
    # and the reverse: a new input stream leaves the noise alone
    monkeypatch.setattr(seeding, "stream_seed", lambda s, p: real(s + 100, p) if p == "input" else real(s, p))
    assert not torch.equal(make_input("noise", 4, (32, 32), 0), z)
    assert torch.equal(tasks.make_task("denoise", clean, 0, sigma=25).observed, noisy)


def test_net_init_leaves_the_global_generator_alone():
    cfg = DIPConfig(arch="skipnet", image="astronaut", size=32, device="cpu", seeds=[0],
                    arch_kwargs=dict(channels_down=8, channels_up=8, channels_skip=2, num_scales=3)).resolved()
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_nets(cfg, (32, 32), 3)[0]
    assert torch.equal(torch.rand(3), before)  # building a net did not move the global stream
    b = build_nets(cfg, (32, 32), 3)[0]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_dip_loop_steps_equal_a_plain_reference_loop():
    """Lockstep: with the same init, input, observation and reg-noise draws, biasprobe's loop (one seed, guard off,
    fused Adam, channels-last) gives the same psnr_gt and loss as a plain loop written here (Adam, MSE)."""
    torch.set_num_threads(1)
    seed, steps, lr, reg = 3, 8, 0.01, 1.0 / 30
    cfg = DIPConfig(arch="skipnet", image="astronaut", size=32, device="cpu", seeds=[seed], iters=steps,
                    log_every=1, lr=lr, reg_noise_std=reg, input_depth=4, backtrack_db=0, spectral=False,
                    es_window=0, arch_kwargs=dict(channels_down=8, channels_up=8, channels_skip=2, num_scales=3))
    got = run_dip(cfg, progress=False).curves
    got = got.pivot(index="step", columns="metric", values="value")

    rc = cfg.resolved()
    clean, _ = prepare_image(rc)
    hw = tuple(clean.shape[-2:])
    obs = tasks.make_task("denoise", clean, seed)
    net = build_nets(rc, hw, 3)[0]
    z = make_input("noise", 4, hw, seed)
    g = seeding.generator(seed, "reg_noise")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    psnr, loss = [], []
    for _ in range(steps):
        out = net(z + reg * torch.randn(z.shape, generator=g))
        mse = ((out - obs.observed) ** 2).mean()
        opt.zero_grad()
        mse.backward()
        opt.step()
        loss.append(mse.item())
        psnr.append(-10 * math.log10(((out.detach().clamp(0, 1) - clean) ** 2).mean().item()))
    np.testing.assert_allclose(got["loss"].to_numpy(), loss, rtol=1e-4)
    np.testing.assert_allclose(got["psnr_gt"].to_numpy(), psnr, atol=1e-3)

