"""One independent random stream per purpose, derived from a run's seed.

A run is determined by its config and one integer seed, but it draws random numbers for several purposes: the
network's initial weights, the DIP input, the observation's noise, a random mask, the reg-noise perturbations, the
training subset, the order of batches, the augmentations, the evaluation's random shifts and samples. Two purposes
must never read the same stream: if the DIP input and the observation noise both come from a generator seeded with
``seed``, the noise is a deterministic function of the input (measured: channel correlations up to |r| = 0.36) and
a generator with pixel-wise paths can reproduce the corruption from its own input.

Each purpose has a fixed number; its stream's seed is ``numpy.random.SeedSequence(seed, spawn_key=(number,))``
turned into one 63-bit integer (NumPy's documented way to derive independent child streams). Same seed and
purpose give the same stream on every machine; a new purpose gets a new number, and existing numbers never change
(``RNG_VERSION`` counts the scheme itself and is recorded with every run config, so results of an older scheme are
never reused as if they were this one's).

Use :func:`generator` for a ``torch.Generator`` (CPU by default, so a draw is the same on every device),
:func:`stream_seed` where an API takes an integer seed, and :func:`manual_seed` around code that can only draw
from torch's global generator (building a network).
"""

from __future__ import annotations

import contextlib

import numpy as np

RNG_VERSION = 2  # 1: every purpose drew from a generator seeded with the run's seed itself

PURPOSES = {
    "init": 1,  # network weights (torch's global generator while the net is built)
    "input": 2,  # DIP's fixed input z
    "observation": 3,  # the task's corruption: noise added to the image, a noise target, a shuffle
    "mask": 4,  # a random inpainting mask; a deepinv operator's own random parts
    "reg_noise": 5,  # DIP's fresh perturbation of z at every step
    "subset": 6,  # which training images form the class-balanced subset
    "val_subset": 7,  # which images of the training pool form the validation split
    "data_order": 8,  # the order of the training batches
    "augment": 9,  # random crops and flips
    "shift_eval": 10,  # the random shifts of the shift-consistency measure
    "attr_sample": 11,  # which evaluation images the attribution measure uses
}


def stream_seed(seed: int, purpose: str) -> int:
    """The seed of ``purpose``'s stream for a run with seed ``seed``: a non-negative int below 2**63."""
    if purpose not in PURPOSES:
        raise KeyError(f"unknown random-stream purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    ss = np.random.SeedSequence(int(seed) % 2**64, spawn_key=(PURPOSES[purpose],))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, purpose: str, device="cpu"):
    """A ``torch.Generator`` on ``device`` for ``purpose``'s stream."""
    import torch

    return torch.Generator(device=device).manual_seed(stream_seed(seed, purpose))


@contextlib.contextmanager
def manual_seed(seed: int, purpose: str):
    """Seed torch's global CPU (and CUDA) generators with ``purpose``'s stream inside the block and restore
    their state after it, so code that draws from the global generator (``nn.Module`` initialisation) is
    determined by the stream and leaves no trace on other draws."""
    import torch

    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []):
        torch.manual_seed(stream_seed(seed, purpose))
        yield
