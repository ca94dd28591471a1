"""What a run records about the machine (runinfo.py): the CPU's name, whether it has bf16 instructions, and the
warning a slow bf16 autocast gets."""

import pytest
import torch

from biasprobe import runinfo


@pytest.fixture
def cpuinfo(monkeypatch, tmp_path):
    """A fake /proc/cpuinfo: write its text, runinfo reads it."""
    fake = tmp_path / "cpuinfo"
    real_path = runinfo.Path
    monkeypatch.setattr(runinfo, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    return fake


def test_provenance_names_the_cpu(cpuinfo):
    """A run's record names the CPU model (step times differ several-fold between CPUs), read from /proc/cpuinfo."""
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000 @ 2.0GHz\nflags\t: avx\n")
    assert runinfo.cpu_name() == "Example CPU 9000 @ 2.0GHz"
    info = runinfo.provenance("cpu")
    assert info["device"] == "cpu" and info["device_name"] == "Example CPU 9000 @ 2.0GHz" and info["cpu_count"] >= 1


def test_bf16_autocast_on_a_cpu_without_bf16_warns(monkeypatch, cpuinfo):
    """--amp bf16 on a CPU without bf16 instructions (emulated there, many times slower) warns once per run."""
    import warnings

    from biasprobe.probes.dip import DIPConfig
    from biasprobe.probes.dip import loop

    cpu = torch.device("cpu")
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without bf16 instructions"):
        loop.warn_slow_amp(DIPConfig(arch="vit", amp="bf16"), cpu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop.warn_slow_amp(DIPConfig(arch="vit", amp="fp32"), cpu)
        monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
        loop.warn_slow_amp(DIPConfig(arch="vit", amp="bf16"), cpu)
    cpuinfo.write_text("model name\t: X\nflags\t\t: fpu avx2 fma\n")
    assert runinfo.cpu_has_bf16() is False
    cpuinfo.write_text("model name\t: X\nflags\t\t: fpu avx2 avx512_bf16 amx_tile\n")
    assert runinfo.cpu_has_bf16() is True
