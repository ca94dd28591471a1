"""Tasks: how an image is corrupted and what the DIP loss sees.

``make_task(name, clean, seed, **params)`` returns an :class:`Observation`. The network output ``x`` (B, C, H, W)
is compared with the observation through the task's forward operator A::

    loss(x) = sum(mask * (A(x) - observed)^2) / sum(mask)        (per sample; mask = 1 everywhere if None)

i.e. the mean squared error over the pixels the loss may see. DIP writes ``mse(out * mask, img * mask)``, the
mean over *all* pixels; the two differ by the constant factor ``mean(mask)``, which Adam ignores (up to its eps).
``forward`` never depends on the seed (one operator serves a batch of seeds, see :func:`stack_observations`); the
seed only draws the noise or the noise image (its ``observation`` stream) and the random mask (its ``mask``
stream), each from its own ``torch.Generator`` on the CPU (``seeding.py``: never the stream of the net's init or
input), so an observation is the same on every device.

Tasks (settings of the official repository, github.com/DmitryUlyanov/deep-image-prior):

- ``denoise``: ``observed = clip(clean + sigma/255 * n, 0, 1)``, n ~ N(0, 1) (``utils/denoising_utils.py``:
  ``get_noisy_image``; sigma = 25 in ``denoising.ipynb``). A = identity; all pixels seen.
- ``inpaint``: ``observed = clean * mask``, mask 1 = known pixel. ``mask``: a file or built-in name (255 = known,
  e.g. ``kate_mask``), ``random`` (Bernoulli, ``drop`` = fraction removed, one mask for all channels as in
  ``restoration.ipynb``), ``block`` (centred square hole, side ``hole`` x short side) or ``text`` (text drawn with
  Pillow's built-in font). A = identity, the loss sees known pixels only.
- ``sr``: A = DIP's ``Downsampler(n_planes=3, factor, kernel_type='lanczos2', phase=0.5, preserve_size=True)``
  (``models/downsampler.py``), reproduced by :class:`LanczosDownsampler`; ``observed = A(clean)``
  (``lr='pil'`` instead takes Pillow's Lanczos resize of the clean image, as the notebook's ``load_LR_HR_imgs_sr``).
  Baseline: Pillow bicubic upsampling of the LR image (DIP's ``get_baselines``).
- ``fit``: observed = clean. ``noise``: clean := U(0, 1) noise image (``kind='uniform'``) or the image with its
  pixels shuffled (``kind='shuffle'``), observed = clean (DIP Fig. 2, noise impedance).
- ``jpeg``: the (JPEG-compressed) image is its own observation and there is no ground truth (snail example).
- ``blur``: deepinv ``Blur`` with a Gaussian kernel (``blur_sigma`` px, reflect padding) + optional noise.
  ``demosaic``: deepinv ``Demosaicing`` (Bayer) + optional noise; the loss sees the sampled colour values.
  ``deepinv``: any ``deepinv.physics`` operator by class name (``operator=...``), other params go to its
  constructor; its random parts (e.g. a random inpainting mask) come from ``operator_seed``, not the seed.

Why the classic three do not use deepinv (deepinv 0.5.0, read and tested against DIP):

- ``deepinv.physics.Downsampling`` has no Lanczos filter (gaussian / bilinear / bicubic / sinc). Given DIP's
  lanczos2 kernel as a custom filter with ``padding='replicate'`` it centres an even kernel at ``h//2 - 1`` and
  keeps pixels 0, f, 2f, ...: the sampling grid sits ``f/2 - 1`` pixels off DIP's (which averages each f x f
  block at its centre). It matches DIP for factor 2 only; factors 4 and 8 differ. So :class:`LanczosDownsampler`
  does DIP's replicate-pad + strided conv itself.
- ``deepinv.physics.GaussianNoise`` adds ``sigma * n`` with sigma on the [0, 1] scale and does not clip; DIP
  clips to [0, 1]. Matching it needs sigma/255 and an extra clamp around the same one line, so denoising draws
  its noise directly.
- ``deepinv.physics.Inpainting`` is ``A(x) = mask * x``: with the mask in the loss this is the same problem, but
  DIP keeps A = identity and puts the mask in the loss, which is what is done here.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biasprobe import seeding
from biasprobe.errors import BiasprobeError
from biasprobe.literal import parse_literal


# ------------------------------------------------------------------------------------------- observation
def masked_mse(pred: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean squared error over seen entries: sum(m (pred - obs)^2) / sum(m), shape (B,)."""
    d = (pred - observed) ** 2
    dims = tuple(range(1, d.dim()))
    if mask is None:
        return d.mean(dims)
    m = mask.to(d.dtype)
    return (d * m).sum(dims) / m.expand_as(d).sum(dims).clamp_min(1)


@dataclass
class Observation:
    """What a DIP run fits, and what it is judged against.

    clean:    (1, C, H, W) ground truth, or None when there is none (``jpeg``)
    observed: (1, C, h, w) what the loss compares A(x) with (a batch (B, ...) after :func:`stack_observations`)
    mask:     (1, 1 or C, h, w) 1 = seen by the loss, or None = all seen
    baseline: (1, C, H, W) the corrupted input at full resolution; its PSNR vs clean is the baseline to beat
    forward:  nn.Module A, net output (B, C, H, W) -> observation space (B, C, h, w); independent of the seed
    """

    task: str
    params: dict
    seed: int | list[int]  # a list after stack_observations
    clean: torch.Tensor | None
    observed: torch.Tensor
    mask: torch.Tensor | None
    baseline: torch.Tensor
    forward: nn.Module
    info: dict = field(default_factory=dict)

    def loss(self, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """MSE(A(x) * mask, observed * mask), averaged over seen entries; ``reduction``: mean | sum | none."""
        per = masked_mse(self.forward(x), self.observed, self.mask)
        if reduction == "none":
            return per
        if reduction == "sum":
            return per.sum()
        if reduction == "mean":
            return per.mean()
        raise ValueError(f"unknown reduction {reduction!r}")

    def to(self, device) -> "Observation":
        """A copy with the tensors on ``device``; ``forward`` is moved in place (it holds no per-seed state)."""
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return dataclasses.replace(self, clean=mv(self.clean), observed=mv(self.observed), mask=mv(self.mask),
                                   baseline=mv(self.baseline), forward=self.forward.to(device))


def stack_observations(obs: list[Observation]) -> Observation:
    """Observations of one task and parameters for several seeds -> one batch (B = len(obs)), sharing forward."""
    if not obs:
        raise BiasprobeError("stack_observations needs at least one observation")
    first = obs[0]
    for o in obs[1:]:
        if o.task != first.task or o.params != first.params:
            raise BiasprobeError("can only batch observations of the same task and parameters; run them separately")
    cat = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
    return dataclasses.replace(first, seed=[o.seed for o in obs], clean=cat([o.clean for o in obs]),
                               observed=cat([o.observed for o in obs]), mask=cat([o.mask for o in obs]),
                               baseline=cat([o.baseline for o in obs]))


# ------------------------------------------------------------------------------------------- DIP downsampler
def lanczos2_kernel(factor: int) -> np.ndarray:
    """DIP's ``get_kernel(factor, 'lanczos', phase=0.5, kernel_width=4*factor+1, support=2)``: (4f, 4f), sum 1.

    Taps at distances d_i = |i + 0.5 - (2f + 1)| / f, i = 1..4f (half-pixel phase, so d never 0);
    k(d) = 2 sin(pi d) sin(pi d / 2) / (pi d)^2 = sinc(d) sinc(d / 2); the 2-D kernel is k(d_i) k(d_j), normalised.
    """
    i = np.arange(1, 4 * factor + 1, dtype=np.float64)
    d = np.abs(i + 0.5 - (4 * factor + 2) / 2.0) / factor
    k1 = np.sinc(d) * np.sinc(d / 2)
    k2 = np.outer(k1, k1)
    return k2 / k2.sum()


class LanczosDownsampler(nn.Module):
    """DIP's ``Downsampler(n_planes, factor, 'lanczos2', phase=0.5, preserve_size=True)``, per channel.

    Replicate-pad by (4f - f) / 2 = 1.5 f, then correlate with the (4f x 4f) kernel at stride f: output pixel j
    averages the input around the centre of block [j f, (j + 1) f), and an H x W image becomes H/f x W/f.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)
        k = torch.from_numpy(lanczos2_kernel(self.factor)).float()  # DIP copies the float64 kernel into float32
        self.register_buffer("kernel", k[None, None], persistent=False)
        self.pad = (k.shape[0] - self.factor) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, -1, -1), stride=self.factor, groups=c)


class PhysicsForward(nn.Module):
    """A deepinv physics operator as a forward module: x -> physics.A(x)."""

    def __init__(self, physics: nn.Module):
        super().__init__()
        self.physics = physics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(x)


# ------------------------------------------------------------------------------------------- parameters
def _err(task: str, msg: str) -> BiasprobeError:
    return BiasprobeError(f"task {task!r}: {msg}")


def _number(task: str, key: str, v, *, lo=None, hi=None, lo_open=False, hi_open=False, integer=False):
    """A number from a number or a numeric string, checked against [lo, hi] (open ends as asked)."""
    if isinstance(v, bool) or v is None:
        raise _err(task, f"parameter {key}={v!r} must be a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise _err(task, f"parameter {key}={v!r} must be a number") from None
    if not np.isfinite(x):
        raise _err(task, f"parameter {key}={v!r} must be finite")
    if integer:
        if x != int(x):
            raise _err(task, f"parameter {key}={v!r} must be a whole number")
        x = int(x)
    bad = (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and (x >= hi if hi_open else x > hi))
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise _err(task, f"parameter {key}={v!r} must be in {lb}{'-inf' if lo is None else lo}, "
                         f"{'inf' if hi is None else hi}{rb}")
    return x


def _choice(task: str, key: str, v, choices):
    if v not in choices:
        raise _err(task, f"parameter {key}={v!r} must be one of {', '.join(map(str, choices))}")
    return v


def _gen(seed: int, purpose: str) -> torch.Generator:
    return seeding.generator(int(seed), purpose)


def _add_noise(y: torch.Tensor, sigma255: float, seed: int, clip: bool) -> torch.Tensor:
    """y + sigma/255 * N(0, 1) drawn on the CPU from ``seed``'s observation stream, optionally clipped to [0, 1]."""
    if sigma255 > 0:
        n = torch.randn(y.shape, generator=_gen(seed, "observation"), dtype=torch.float32).to(y.device, y.dtype)
        y = y + (sigma255 / 255.0) * n
    return y.clamp(0, 1) if clip else y


def _identity_obs(task, params, seed, clean, observed, mask=None, baseline=None, **info) -> Observation:
    return Observation(task=task, params=params, seed=seed, clean=clean, observed=observed, mask=mask,
                       baseline=observed if baseline is None else baseline, forward=nn.Identity(), info=info)


# ------------------------------------------------------------------------------------------- tasks
def _denoise(clean, seed, sigma=25.0):
    sigma = _number("denoise", "sigma", sigma, lo=0, hi=255)
    noisy = _add_noise(clean, sigma, seed, clip=True)
    return _identity_obs("denoise", {"sigma": sigma}, seed, clean, noisy)


def _text_mask(h: int, w: int, text: str, font_size: int | None) -> torch.Tensor:
    """Lines of ``text`` drawn in black (0 = unknown) over the image with Pillow's built-in font."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(font_size) if font_size else max(8, min(h, w) // 12)
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    line = (text + "  ") * (w // max(1, size) + 2)
    step = max(2, int(round(size * 2.0)))
    for r, y in enumerate(range(size // 2, h, step)):
        draw.text((-(r * size) % (3 * size) - 2 * size, y), line, font=font, fill=0)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0 > 0.5).float()[None, None]


def _inpaint(clean, seed, mask="random", drop=None, hole=None, text=None, font_size=None, size=None, multiple=None):
    t = "inpaint"
    _, C, H, W = clean.shape
    if isinstance(mask, os.PathLike):
        mask = os.fspath(mask)
    if not isinstance(mask, (str, torch.Tensor)):
        raise _err(t, f"parameter mask={mask!r} must be a file or built-in name, random, block, text or a tensor")
    params = {"mask": mask if isinstance(mask, str) else "tensor"}
    kind = mask if isinstance(mask, str) and mask in ("random", "block", "text") else ("tensor" if isinstance(mask, torch.Tensor) else "file")
    own = {"random": ("drop",), "block": ("hole",), "text": ("text", "font_size"), "file": ("size", "multiple"),
           "tensor": ()}[kind]
    for key, val in (("drop", drop), ("hole", hole), ("text", text), ("font_size", font_size), ("size", size),
                     ("multiple", multiple)):
        if val is not None and key not in own:
            raise _err(t, f"parameter {key!r} does not apply to mask={params['mask']!r}")
    if kind == "random":
        drop = _number(t, "drop", 0.5 if drop is None else drop, lo=0, hi=1, hi_open=True)
        params["drop"] = drop
        m = (torch.rand((1, 1, H, W), generator=_gen(seed, "mask")) >= drop).float()
    elif kind == "block":
        hole = _number(t, "hole", 0.5 if hole is None else hole, lo=0, hi=1, lo_open=True, hi_open=True)
        params["hole"] = hole
        side = max(1, int(round(hole * min(H, W))))
        m = torch.ones(1, 1, H, W)
        top, left = (H - side) // 2, (W - side) // 2
        m[..., top : top + side, left : left + side] = 0
    elif kind == "text":
        text = "hello world" if text is None else str(text)
        if not text.strip():
            raise _err(t, "parameter text must not be empty")
        fs = None if font_size is None else _number(t, "font_size", font_size, lo=4, integer=True)
        params.update(text=text, font_size=fs)
        m = _text_mask(H, W, text, fs)
    elif kind == "tensor":
        m = mask.detach().float().cpu()
        m = m.reshape(1, *m.shape[-3:]) if m.dim() >= 3 else m.reshape(1, 1, *m.shape[-2:])
        if m.dim() != 4 or m.shape[1] not in (1, C) or tuple(m.shape[-2:]) != (H, W):
            raise _err(t, f"mask tensor of shape {tuple(mask.shape)} does not fit the {C}x{H}x{W} image; "
                          "give (H, W), (1, H, W) or (C, H, W)")
        m = (m > 0.5).float()
    else:
        from biasprobe.probes.dip.images import load_mask

        sz = None if size is None else _number(t, "size", size, lo=1, integer=True)
        mu = None if multiple is None else _number(t, "multiple", multiple, lo=1, integer=True)
        params.update(size=sz, multiple=mu)
        m = load_mask(mask, (H, W), size=sz, multiple=mu)[None]
    if m.sum() == 0:
        raise _err(t, "the mask hides every pixel; lower drop/hole or use another mask")
    m = m.to(clean.device, clean.dtype)
    observed = clean * m
    return _identity_obs(t, params, seed, clean, observed, mask=m, known_fraction=float(m.mean()))


def _sr(clean, seed, factor=4, lr="downsampler"):
    from biasprobe.probes.dip.images import resize

    t = "sr"
    factor = _choice(t, "factor", _number(t, "factor", factor, integer=True), (2, 4, 8))
    lr = _choice(t, "lr", lr, ("downsampler", "pil"))
    _, C, H, W = clean.shape
    if H % factor or W % factor:
        raise _err(t, f"factor {factor} does not divide the image size {H}x{W}; crop the image to a multiple "
                      f"of {factor} (e.g. multiple=32)")
    if H // factor < 2 or W // factor < 2:
        raise _err(t, f"a {H}x{W} image is too small for factor {factor}; use a larger image")
    down = LanczosDownsampler(factor).to(clean.device)
    with torch.no_grad():
        low = down(clean) if lr == "downsampler" else resize(clean, H // factor, W // factor, "lanczos")
    baseline = resize(low, H, W, "bicubic")
    return Observation(task=t, params={"factor": factor, "lr": lr}, seed=seed, clean=clean, observed=low, mask=None,
                       baseline=baseline, forward=down,
                       info={"baseline": "bicubic upsampling of the LR image (Pillow, a=-0.5), as DIP get_baselines",
                             "forward": "DIP Downsampler lanczos2, phase 0.5, preserve_size"})


def _fit(clean, seed):
    return _identity_obs("fit", {}, seed, clean, clean)


def _noise(clean, seed, kind="uniform"):
    kind = _choice("noise", "kind", kind, ("uniform", "shuffle"))
    _, C, H, W = clean.shape
    g = _gen(seed, "observation")
    if kind == "uniform":
        target = torch.rand((1, C, H, W), generator=g).to(clean.device, clean.dtype)
    else:
        perm = torch.randperm(H * W, generator=g).to(clean.device)
        target = clean.flatten(2)[:, :, perm].reshape(1, C, H, W)
    return _identity_obs("noise", {"kind": kind}, seed, target, target)


def _jpeg(clean, seed):
    return _identity_obs("jpeg", {}, seed, None, clean)


def _literal(v):
    """CLI strings -> Python literals where they parse ('4' -> 4, '(3, 3)' -> (3, 3)); other values unchanged."""
    return parse_literal(v)


def _deepinv_obs(task, params, seed, clean, physics, sigma, clip, mask=None, **info) -> Observation:
    fwd = PhysicsForward(physics).to(clean.device)
    with torch.no_grad():
        try:
            y = fwd(clean)
        except Exception as e:
            raise _err(task, f"the operator fails on a {tuple(clean.shape)} image ({type(e).__name__}: {e}); "
                             "check its parameters") from None
        if not torch.is_tensor(y) or not y.is_floating_point() or y.is_complex():
            raise _err(task, "the operator's output is not a real image tensor; choose a real-valued operator")
        y = _add_noise(y, sigma, seed, clip=clip)
        if y.shape == clean.shape:
            baseline, how = y.clamp(0, 1), "the observation itself"
        else:
            try:
                baseline, how = physics.A_dagger(y).clamp(0, 1), "A_dagger(observed)"
            except Exception:
                raise _err(task, "the operator changes the image size and has no A_dagger for a baseline; "
                                 "choose another operator") from None
    return Observation(task=task, params=params, seed=seed, clean=clean, observed=y, mask=mask, baseline=baseline,
                       forward=fwd, info={"baseline": how, **info})


def _blur(clean, seed, blur_sigma=2.0, sigma=0.0):
    import deepinv
    import deepinv.physics.functional as dF

    t = "blur"
    blur_sigma = _number(t, "blur_sigma", blur_sigma, lo=0, lo_open=True, hi=64)
    sigma = _number(t, "sigma", sigma, lo=0, hi=255)
    kernel = dF.gaussian_blur(sigma=(blur_sigma, blur_sigma))
    physics = deepinv.physics.Blur(filter=kernel, padding="reflect")
    return _deepinv_obs(t, {"blur_sigma": blur_sigma, "sigma": sigma}, seed, clean, physics, sigma, clip=True,
                        kernel_size=int(kernel.shape[-1]))


def _demosaic(clean, seed, sigma=0.0):
    import deepinv

    t = "demosaic"
    sigma = _number(t, "sigma", sigma, lo=0, hi=255)
    if clean.shape[1] != 3:
        raise _err(t, f"needs an RGB image, got {clean.shape[1]} channel(s); use a colour image")
    physics = deepinv.physics.Demosaicing(img_size=tuple(clean.shape[1:]), pattern="bayer")
    mask = physics.mask.reshape(1, *physics.mask.shape[-3:]).to(clean.device, clean.dtype)
    obs = _deepinv_obs(t, {"sigma": sigma}, seed, clean, physics, sigma, clip=True, mask=mask)
    obs.observed = obs.observed * mask  # noise only on the sampled values
    obs.baseline = obs.observed
    return obs


def _deepinv(clean, seed, operator=None, sigma=0.0, operator_seed=0, **kw):
    import deepinv

    t = "deepinv"
    if not operator:
        raise _err(t, "name a deepinv.physics operator with operator=..., e.g. operator=Inpainting")
    cls = getattr(deepinv.physics, str(operator), None)
    if not (inspect.isclass(cls) and issubclass(cls, deepinv.physics.Physics)):
        names = [n for n in dir(deepinv.physics)
                 if inspect.isclass(getattr(deepinv.physics, n)) and issubclass(getattr(deepinv.physics, n), deepinv.physics.Physics)]
        close = difflib.get_close_matches(str(operator), names, n=3, cutoff=0.4)
        raise _err(t, f"deepinv.physics has no operator {operator!r}"
                      + (f"; did you mean {', '.join(close)}?" if close else "; see dir(deepinv.physics)"))
    sigma = _number(t, "sigma", sigma, lo=0, hi=255)
    operator_seed = _number(t, "operator_seed", operator_seed, integer=True)
    sig = inspect.signature(cls.__init__).parameters
    named = [n for n, p in sig.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    kwargs = {k: _literal(v) for k, v in kw.items()}
    for k in kwargs:
        if k not in named:
            raise _err(t, f"deepinv.physics.{operator} has no parameter {k!r}; its parameters: {', '.join(named)}")
    if "img_size" in named and "img_size" not in kwargs:
        kwargs["img_size"] = tuple(clean.shape[1:])
    if "rng" in named and "rng" not in kwargs:
        kwargs["rng"] = _gen(operator_seed, "mask")
    if "device" in named:
        kwargs.setdefault("device", "cpu")
    try:
        physics = cls(**kwargs)
    except Exception as e:
        raise _err(t, f"cannot build deepinv.physics.{operator} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                      "check its parameters") from None
    params = {"operator": str(operator), "sigma": sigma, "operator_seed": operator_seed,
              **{k: v for k, v in kw.items()}}
    return _deepinv_obs(t, params, seed, clean, physics, sigma, clip=False)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: Callable
    description: str
    open_params: bool = False  # the generic deepinv task passes unknown params to the operator


_TASKS: dict[str, TaskSpec] = {s.name: s for s in [
    TaskSpec("denoise", _denoise, "additive Gaussian noise, sigma on the 0-255 scale, clipped (DIP denoising)"),
    TaskSpec("inpaint", _inpaint, "known pixels only: mask file/name, random, block or text (DIP inpainting)"),
    TaskSpec("sr", _sr, "super-resolution x2/x4/x8 with DIP's lanczos2 downsampler"),
    TaskSpec("fit", _fit, "fit the clean image itself"),
    TaskSpec("noise", _noise, "fit a noise image or shuffled pixels (DIP Fig. 2, noise impedance)"),
    TaskSpec("jpeg", _jpeg, "the compressed image is its own target, no ground truth (DIP snail)"),
    TaskSpec("blur", _blur, "Gaussian deblurring (deepinv Blur), optional noise"),
    TaskSpec("demosaic", _demosaic, "Bayer demosaicing (deepinv Demosaicing), optional noise"),
    TaskSpec("deepinv", _deepinv, "any deepinv.physics operator: operator=<class name>, its params", open_params=True),
]}


def list_tasks() -> list[str]:
    return list(_TASKS)


def task_params(name: str) -> dict:
    """The parameters of a task and their defaults."""
    spec = _get(name)
    return {k: p.default for k, p in inspect.signature(spec.fn).parameters.items()
            if k not in ("clean", "seed") and p.kind is not p.VAR_KEYWORD}


def _get(name: str) -> TaskSpec:
    if name not in _TASKS:
        close = difflib.get_close_matches(str(name), list(_TASKS), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(_TASKS)}"
        raise BiasprobeError(f"unknown task {name!r}; {hint}")
    return _TASKS[name]


def make_task(name: str, clean: torch.Tensor, seed: int = 0, **params) -> Observation:
    """Corrupt ``clean`` ((C, H, W) or (1, C, H, W), values in [0, 1]) for task ``name``; see the module doc."""
    spec = _get(name)
    if not isinstance(clean, torch.Tensor) or clean.dim() not in (3, 4) or (clean.dim() == 4 and clean.shape[0] != 1):
        shape = tuple(clean.shape) if hasattr(clean, "shape") else type(clean).__name__
        raise BiasprobeError(f"task {name!r}: expected one image (C, H, W) or (1, C, H, W), got {shape}")
    clean = (clean[None] if clean.dim() == 3 else clean).detach().float().contiguous()
    if clean.shape[1] not in (1, 3):
        raise BiasprobeError(f"task {name!r}: images must have 1 or 3 channels, got {clean.shape[1]}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise BiasprobeError(f"task {name!r}: seed must be an integer, got {seed!r}")
    if not spec.open_params:
        allowed = task_params(name)
        for k in params:
            if k not in allowed:
                have = ", ".join(allowed) if allowed else "none"
                raise BiasprobeError(f"task {name!r} has no parameter {k!r}; its parameters: {have}")
    return spec.fn(clean, int(seed), **params)
