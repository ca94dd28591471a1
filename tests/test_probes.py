"""The Probe interface: both probes implement it, and calibration works for a probe it has never heard of."""

import dataclasses

import pandas as pd
import pytest

from biasprobe import BiasprobeError
from biasprobe.studies import calibrate as cal
from biasprobe.probes import PROBES, Probe, get_probe
from biasprobe.studies.runner import study_job


@pytest.mark.parametrize("name", ["dip", "classify"])
def test_both_probes_implement_the_interface(name):
    probe = get_probe(name)
    assert isinstance(probe, Probe) and probe.name == name and probe.kind and probe.criterion
    assert dataclasses.is_dataclass(probe.config_type) and {"arch", "lr", "device"} <= probe.fields()
    cfg = probe.make_config({"arch": "skipnet", "lr": 1e-3}, device="cpu")
    assert isinstance(cfg, probe.config_type) and cfg.device == "cpu" and cfg.lr == 1e-3
    assert probe.make_config(dataclasses.asdict(cfg)) == cfg
    assert probe.tables and len(set(probe.tables.values())) == len(probe.tables)
    for method in ("check", "run", "calibration_run"):
        assert getattr(type(probe), method) is not getattr(Probe, method), method


def test_unknown_probe_is_one_line():
    with pytest.raises(BiasprobeError) as e:
        get_probe("gan")
    assert "'gan'" in str(e.value) and "dip" in str(e.value) and "\n" not in str(e.value)


@dataclasses.dataclass
class FakeConfig:
    arch: str = "skipnet"
    lr: float = 1e-3
    seed: int = 0
    width: int = 4
    device: str = "auto"


class FakeProbe(Probe):
    """A third probe: one run per seed, no weight decay; its score is lr * width."""

    name, kind, criterion = "fake", "test", "lr times width"
    tables = {"summary": "fake_summary"}
    config_type = FakeConfig

    def check(self, config):
        if config.width < 1:
            raise BiasprobeError("width must be >= 1")

    def run(self, config):
        return {"summary": pd.DataFrame([dict(arch=config.arch, seed=config.seed, value=config.lr * config.width)])}

    def calibration_run(self, config):
        s = self.run(config)["summary"]
        return {"scores": pd.DataFrame(dict(seed=s.seed, score=s.value, diverged=False)), "curves": s}


def test_a_new_probe_runs_through_calibration_without_code_changes(monkeypatch, tmp_path):
    monkeypatch.setitem(PROBES, "fake", FakeProbe())
    configs = cal.calibration_configs(["skipnet", "vit"], "fake", [1e-3, 1e-2], {"width": 3}, seeds=(0, 1))
    assert len(configs) == 2 * 2 * 2 and all(c["probe"] == "fake" and c["width"] == 3 for c in configs)
    assert {c["seed"] for c in configs} == {0, 1}
    with pytest.raises(BiasprobeError, match="width"):
        cal.calibration_configs(["skipnet"], "fake", [1e-3], {"width": 0})
    with pytest.raises(BiasprobeError, match="weight-decay grid"):
        cal.calibration_configs(["skipnet"], "fake", [1e-3], {}, wd_grid=[0.1])
    table = cal.calibrate(["skipnet"], "fake", [1e-3, 1e-2], {"width": 3}, tmp_path, progress=False)
    choice = cal.choose(table).iloc[0]
    assert choice.lr == 1e-2 and choice.score == pytest.approx(0.03) and choice.criterion == "lr times width"
    assert study_job({"probe": "fake", "config": {"lr": 0.5}})["summary"].value.iloc[0] == 2.0
