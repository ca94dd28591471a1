"""Inputs refused before the compute, and outputs written with the user's mode (the reliability issue's last items)."""

import os

import numpy as np
import pytest
from PIL import Image

from biasprobe import BiasprobeError


def test_one_class_data_is_refused_before_training(tmp_path):
    import torch

    from biasprobe.probes.classify.train import ClassifyConfig, prepare_data

    for split in ("train", "test"):
        (tmp_path / split / "cat").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / split / "cat" / f"{i}.png")
    with pytest.raises(BiasprobeError, match="1 class.*at least 2"):
        prepare_data(ClassifyConfig(arch="vit", n_train=2, data=str(tmp_path)), torch.device("cpu"))


def test_a_dip_run_folder_gets_the_umask_mode(tmp_path):
    from biasprobe.probes.dip import DIPConfig, run_dip
    from biasprobe.probes.dip.records import save_result

    cfg = DIPConfig(arch="deep_decoder", image="astronaut", size=32, iters=3, log_every=1, spectral=False)
    old = os.umask(0o022)
    try:
        (d,) = save_result(run_dip(cfg, progress=False), tmp_path)
    finally:
        os.umask(old)
    assert d.stat().st_mode & 0o777 == 0o755
