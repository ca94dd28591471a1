"""The predictive probe: train an architecture's classifier from random init on a small CIFAR-10 subset.

One run = ``ClassifyConfig`` + seed. The recipe is the same for every architecture (per-architecture learning
rates are calibrated elsewhere, on the validation split):

- data: a class-balanced subset of ``n_train`` training images drawn from ``seed`` (``cifar.balanced_indices``);
  evaluation on the full test split, or, with ``eval_split='val'``, on ``val_size`` class-balanced images carved
  from the training pool *excluding the subset* (so the subset is the same as in the test run of that seed, and
  no test image informs a choice);
- augmentation: random crop (pad 4) + horizontal flip, seeded, on batches; CIFAR mean/std normalisation;
- budget: ``steps`` AdamW updates (step mode, what studies should use: the same number of updates at the same
  batch size for every architecture and every N, batches cut from successive seeded passes over the subset,
  ``step_batches``), or ``epochs`` passes when ``steps`` is None (epoch mode, as before; the number of updates then
  grows with N);
- optimiser: AdamW (lr 1e-3, weight decay 0.05, batch 128), learning rate per step: linear warm-up over
  ``warmup_frac`` of the steps (or ``warmup_epochs``) then cosine decay to 0 (Loshchilov & Hutter 2017),
  cross-entropy with optional label smoothing;
- the curve: in step mode an evaluation every ``eval_every_steps`` (default a tenth of the budget), at 90% of the
  budget and at the end (the steps table); the summary's ``plateau_gain`` is the accuracy gained over the last
  tenth and ``plateaued`` says whether it is at most ``plateau_tol`` (1 point): a run still learning at the end
  measures its budget, not only its bias;
- randomness: the seed's independent streams (``seeding.py``) for the subset, the weights, the batch order, the
  augmentations and the measures' random shifts and samples; the subset depends on the seed only, so runs of
  different architectures with one seed see the same images;
- mixed precision (autocast bf16, or fp16 with a GradScaler) on CUDA only; on the CPU a fixed seed gives the same
  epochs / steps table (all but the ``seconds`` column).

After training, the summary adds ECE (15 bins) and, unless ``measures=False``, shift consistency (circular and
zero-padded shifts up to 4 px) and attribution locality (Saliency and IntegratedGradients on ``attr_samples``
seeded eval images), see ``predictive``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from biasprobe import runinfo, seeding
from biasprobe.probes.classify import cifar
from biasprobe.probes.classify import measures as predictive
from biasprobe.errors import BiasprobeError
from biasprobe.archs.factory import count_params, create_classifier


@dataclass
class ClassifyConfig:
    arch: str
    n_train: int = 1000
    steps: int | None = None  # the budget in AdamW updates (the same for every arch and N); None: ``epochs``
    epochs: int = 30  # the budget when steps is None (epoch mode, as before)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0  # epoch mode
    warmup_frac: float = 0.05  # step mode: warm-up over this fraction of ``steps``
    label_smoothing: float = 0.0
    augment: bool = True
    seed: int = 0
    data: str | None = None  # ImageFolder dir with train/ and test/ (default: the shared subset)
    data_root: str | None = None  # torchvision CIFAR-10 root
    download: bool = False
    device: str = "auto"
    eval_split: str = "test"  # 'test' or 'val' (val_size images from the training pool outside the subset)
    val_size: int = 500
    weights: str | None = None  # a local state_dict checkpoint to start from instead of random init
    arch_kwargs: dict = field(default_factory=dict)
    # measures
    measures: bool = True  # after training: shift consistency and attribution locality (False: accuracy, ECE only)
    ece_bins: int = 15
    shift_max: int = 4
    attr_samples: int = 64
    attr_methods: tuple[str, ...] = ("saliency", "ig")
    ig_steps: int = 32
    eval_batch_size: int = 500
    n_test: int | None = None  # evaluate on this many test images (class-balanced, fixed); None = all
    eval_every: int = 1  # epoch mode: evaluate after every k-th epoch (and always after the last); others hold NaN
    eval_every_steps: int | None = None  # step mode: evaluate every k steps; None: max(1, steps // 10)
    plateau_tol: float = 0.01  # step mode: plateaued = accuracy gain over the last tenth of the budget <= this
    rng_version: int = seeding.RNG_VERSION  # the random-stream scheme (seeding.py); part of the run's identity

    def validate(self) -> None:
        checks = [
            (self.n_train >= 1, f"--n-train must be positive, got {self.n_train}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.steps is None or self.steps >= 1, f"--steps must be at least 1, got {self.steps}"),
            (0 <= self.warmup_frac < 1, f"--warmup-frac must be in [0, 1), got {self.warmup_frac}"),
            (self.eval_every_steps is None or self.eval_every_steps >= 1,
             f"--eval-every-steps must be at least 1, got {self.eval_every_steps}"),
            (self.plateau_tol >= 0, f"plateau_tol must be >= 0, got {self.plateau_tol}"),
            (self.n_test is None or self.n_test >= 1, f"--n-test must be positive, got {self.n_test}"),
            (self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}"),
            (self.batch_size >= 2, f"--batch-size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.eval_split in ("test", "val"), f"--eval-split must be test or val, got {self.eval_split!r}"),
            (self.val_size >= 1, f"--val-size must be positive, got {self.val_size}"),
            (self.attr_samples >= 0, f"attr_samples must be >= 0, got {self.attr_samples}"),
            (self.shift_max >= 0, f"shift_max must be >= 0, got {self.shift_max}"),
            (self.rng_version == seeding.RNG_VERSION,
             f"rng_version {self.rng_version} cannot be reproduced: this biasprobe draws with scheme "
             f"{seeding.RNG_VERSION}; drop the field or set it to {seeding.RNG_VERSION}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BiasprobeError(msg)
        for m in self.attr_methods:
            if m not in ("saliency", "ig", "smoothgrad"):
                raise BiasprobeError(f"unknown attribution method {m!r}: use saliency, ig or smoothgrad")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["attr_methods"] = list(self.attr_methods)
        return d

    def short_hash(self) -> str:
        """8 hex digits of the config (without device, and without the other mode's fields: an epoch-mode
        config keeps the name it had before step budgets existed), for run directory names."""
        d = self.to_dict()
        d.pop("device")
        mode_fields = STEP_FIELDS if self.steps is None else EPOCH_FIELDS
        for k in mode_fields:
            d.pop(k)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def run_name(self) -> str:
        arch = re.sub(r"[^A-Za-z0-9._+-]", "_", self.arch)  # timm:NAME, NAME[k=v]: a folder name on any OS
        return f"{arch}-n{self.n_train}-s{self.seed}-{self.short_hash()}"


STEP_FIELDS = ("steps", "warmup_frac", "eval_every_steps", "plateau_tol")  # used in step mode only
EPOCH_FIELDS = ("epochs", "warmup_epochs", "eval_every")  # used in epoch mode only


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class ProbeData:
    """Float [0, 1] images on the device: the training subset and the evaluation split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    classes: tuple[str, ...]
    source: str


def prepare_data(cfg: ClassifyConfig, device: torch.device) -> ProbeData:
    train = cifar.load_split("train", cfg.data, cfg.data_root, cfg.download)
    if train.num_classes < 2:  # refused before training: calibration and ECE need at least two classes
        raise BiasprobeError(f"the training data ({train.source}) has {train.num_classes} class(es); a classifier "
                             f"needs at least 2 (one sub-folder per class)")
    idx = cifar.balanced_indices(train.labels, cfg.n_train, seeding.stream_seed(cfg.seed, "subset"), train.num_classes)
    if cfg.eval_split == "test":
        ev = cifar.load_split("test", cfg.data, cfg.data_root, cfg.download)
        if cfg.n_test:  # a fixed class-balanced part of the test split (the same for every run)
            ev = ev.subset(cifar.balanced_indices(ev.labels, cfg.n_test, 0, ev.num_classes, what="--n-test"))
    else:
        val_idx = cifar.balanced_indices(train.labels, cfg.val_size, seeding.stream_seed(cfg.seed, "val_subset"),
                                         train.num_classes,
                                         exclude=idx, what="--val-size")
        ev = train.subset(val_idx)
    if ev.classes != train.classes:
        raise BiasprobeError(f"train and {cfg.eval_split} splits have different class folders: "
                             f"{train.classes} vs {ev.classes}")
    sub = train.subset(idx)

    def to(x):
        return x.to(device).float().div_(255)

    return ProbeData(to(sub.images), sub.labels.to(device), to(ev.images), ev.labels.to(device), train.classes,
                     train.source)


# ----------------------------------------------------------------------------------------------
# Model and optimisation


def build_model(cfg: ClassifyConfig, num_classes: int, device: torch.device) -> torch.nn.Module:
    try:
        model = create_classifier(cfg.arch, num_classes=num_classes, img_size=(cifar.IMG_SIZE, cifar.IMG_SIZE),
                                  **cfg.arch_kwargs)
    except TypeError as exc:
        raise BiasprobeError(f"architecture {cfg.arch}: bad arch_kwargs {cfg.arch_kwargs} ({exc})") from exc
    if cfg.weights:
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise BiasprobeError(f"--weights {cfg.weights}: no such file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 (any unreadable file is the user's)
            raise BiasprobeError(f"--weights {cfg.weights}: not a readable torch checkpoint ({exc})") from exc
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise BiasprobeError(f"--weights {cfg.weights} does not fit {cfg.arch}'s classifier: "
                                 f"{first[0].strip()}") from exc
    model = model.to(device)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 3, cifar.IMG_SIZE, cifar.IMG_SIZE, device=device))
    except RuntimeError as exc:
        raise BiasprobeError(f"{cfg.arch}'s classifier cannot take 32x32 images with {cfg.arch_kwargs or 'defaults'}"
                             f": {str(exc).splitlines()[0]}") from exc
    if out.shape != (2, num_classes):
        raise BiasprobeError(f"{cfg.arch}'s classifier gives logits of shape {tuple(out.shape)}, not (B, {num_classes})")
    return model


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 1/warmup_steps to 1, then cosine decay to 0 at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _amp(device: torch.device):
    """(autocast dtype or None, GradScaler enabled?) for the device: bf16 where supported, else fp16 + scaler."""
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded permutation split into batches; a last batch of one image joins the previous (BatchNorm)."""
    parts = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) < 2:
        parts[-2] = torch.cat([parts[-2], parts.pop()])
    return parts


def epoch_batches(n: int, batch_size: int, epochs: int, generator: torch.Generator):
    """Epoch mode: ``epochs`` seeded permutations, each split by :func:`_batches` (a smaller last batch)."""
    for _ in range(epochs):
        yield from _batches(n, batch_size, generator)


def step_batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Step mode: exactly ``steps`` batches of exactly ``batch_size`` indices. Seeded permutations of the subset
    (one per pass) are concatenated and cut into batches, so a pass's leftover images open the next batch with
    the next pass's first ones: no partial batch, no image skipped, every image seen equally often (+-1)."""
    pending = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def plateau_step(steps: int) -> int:
    """The step at 90% of the budget, where the plateau check compares (always evaluated in step mode)."""
    return max(1, round(0.9 * steps))


def budget(cfg: ClassifyConfig, n: int, bs: int) -> tuple[int, int, dict[int, bool]]:
    """(total steps, warm-up steps, log points: step -> evaluate there?).

    Step mode: ``cfg.steps`` updates, warm-up ``warmup_frac`` of them; a row (always evaluated) every
    ``eval_every_steps`` steps (default ``max(1, steps // 10)``), at 90% of the budget and at the end.
    Epoch mode: a row after every epoch, evaluated after every ``eval_every``-th and the last."""
    if cfg.steps is not None:
        every = cfg.eval_every_steps or max(1, cfg.steps // 10)
        points = {*range(every, cfg.steps + 1, every), plateau_step(cfg.steps), cfg.steps}
        return cfg.steps, round(cfg.warmup_frac * cfg.steps), {s: True for s in sorted(points)}
    per_epoch = len(_batches(n, bs, torch.Generator().manual_seed(0)))
    points = {e * per_epoch: e % cfg.eval_every == 0 or e == cfg.epochs for e in range(1, cfg.epochs + 1)}
    return per_epoch * cfg.epochs, round(cfg.warmup_epochs * per_epoch), points


def plateau(curve: pd.DataFrame, acc: str, steps: int, tol: float) -> dict:
    """plateau_gain = accuracy at the end minus accuracy at 90% of the budget (``plateau_step``), from a table
    with ``step`` and ``acc`` columns; plateaued = gain <= tol. Not plateaued: the budget stopped the run while
    it still learned, so its accuracy measures the budget as much as the bias."""
    at = curve.set_index("step")[acc]
    ref = plateau_step(steps)
    gain = float(at.loc[steps] - at.loc[ref])
    return {"plateau_step": ref, "plateau_gain": gain, "plateaued": bool(gain <= tol)}


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 500, amp_dtype=None) -> tuple[float, float, torch.Tensor]:
    """(accuracy, mean NLL, class probabilities (n, C) on the CPU) of the model on normalised batches."""
    was_training = model.training
    model.eval()
    logits = []
    for i in range(0, len(x), batch_size):
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits.append(model(cifar.normalize(x[i : i + batch_size])).float())
    model.train(was_training)
    logits = torch.cat(logits)
    nll = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return acc, nll, logits.softmax(1).cpu()


# ----------------------------------------------------------------------------------------------
# The run


def run_classify(cfg: ClassifyConfig, out_dir: str | Path | None = None,
                 progress: bool = True, extra_summary: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Train ``cfg.arch``'s classifier on the subset, then measure it. Returns (curve, summary): the curve is the
    epochs table (one row per epoch) in epoch mode, the steps table (one row per evaluation: step, epoch = passes
    over the subset so far, training loss/accuracy since the previous row, eval accuracy/NLL, lr, seconds) in
    step mode.

    With ``out_dir``: config.json (config, seed, provenance), epochs.parquet (epoch mode) or steps.parquet (step
    mode), summary.json (with ``extra_summary`` merged in), learning_curve.png, written as a whole (temp folder,
    then rename); an existing ``out_dir`` is refused before training."""
    cfg.validate()
    if out_dir is not None and Path(out_dir).exists():
        raise BiasprobeError(f"{out_dir} exists: this run ran already; remove that folder or use another --out")
    device = runinfo.resolve_device(cfg.device)
    data = prepare_data(cfg, device)
    runinfo.seed_everything(seeding.stream_seed(cfg.seed, "init"))  # the weights: the init stream
    model = build_model(cfg, len(data.classes), device)
    n_params = count_params(model)

    amp_dtype, use_scaler = _amp(device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and norm weights: no weight decay
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                            fused=device.type in ("cpu", "cuda"))  # one kernel for all tensors: same formula
    n = len(data.y_train)
    bs = min(cfg.batch_size, n)
    order_gen, augment_gen = seeding.generator(cfg.seed, "data_order"), seeding.generator(cfg.seed, "augment")
    total, warmup, log_at = budget(cfg, n, bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))
    by_steps = cfg.steps is not None
    batches = step_batches(n, bs, total, order_gen) if by_steps else epoch_batches(n, bs, cfg.epochs, order_gen)

    ev = cfg.eval_split
    rows, train_seconds, t_start = [], 0.0, time.perf_counter()
    seen_total, step = 0, 0
    # summed on the device and read once per row: no host sync per step (it would stall a GPU)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, t0 = 0, time.perf_counter()
    model.train()
    bar = tqdm(total=total, desc=cfg.run_name(), disable=not progress, leave=False)
    for step, idx in enumerate(batches, 1):
        idx = idx.to(device)
        x = data.x_train[idx]
        if cfg.augment:
            x = cifar.augment(x, augment_gen)
        y = data.y_train[idx]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(cifar.normalize(x))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        bar.update()
        if step not in log_at:
            continue
        # a row: training loss and accuracy since the last row, then (where due) the evaluation
        train_seconds += time.perf_counter() - t0
        seen_total += seen
        train_loss, train_acc = loss_sum.item() / seen, correct.item() / seen
        where = f"step {step}" if by_steps else f"epoch {len(rows) + 1}"
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"{cfg.run_name()}: training loss is not finite at {where}")
        if log_at[step]:
            acc, nll, probs = evaluate(model, data.x_eval, data.y_eval, cfg.eval_batch_size, amp_dtype)
        else:
            acc = nll = float("nan")
        at = {"step": step, "epoch": seen_total / n} if by_steps else {"epoch": len(rows) + 1}
        rows.append({**at, "train_loss": train_loss, "train_acc": train_acc, f"{ev}_acc": acc, f"{ev}_nll": nll,
                     "lr": lr, "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{acc:.3f}")
        loss_sum.zero_()
        correct.zero_()
        seen, t0 = 0, time.perf_counter()
    bar.close()
    wall_train = time.perf_counter() - t_start

    curve = pd.DataFrame(rows)  # one row per epoch, or per evaluation in step mode
    curve.insert(0, "arch", cfg.arch)
    curve.insert(1, "n_train", cfg.n_train)
    curve.insert(2, "seed", cfg.seed)

    t_measure = time.perf_counter()
    # acc, nll, probs: the evaluation after the last step
    summary = {
        "arch": cfg.arch, "n_train": cfg.n_train, "seed": cfg.seed, "eval_split": ev, "n_eval": len(data.y_eval),
        f"final_{ev}_acc": acc, f"best_{ev}_acc": float(curve[f"{ev}_acc"].max()), f"final_{ev}_nll": nll,
        "ece": predictive.ece(probs, data.y_eval.cpu(), cfg.ece_bins),
        "n_params": n_params, "steps_run": step, "images_seen": seen_total, "train_seconds": train_seconds,
        "train_images_per_s": seen_total / train_seconds, "device": str(device),
    }
    if by_steps:
        summary.update(plateau(curve, f"{ev}_acc", total, cfg.plateau_tol))
    if cfg.measures:
        summary.update(measure(model, data, cfg))
    summary["measure_seconds"] = time.perf_counter() - t_measure
    summary["wall_seconds"] = wall_train + summary["measure_seconds"]

    summary.update(extra_summary or {})
    if out_dir is not None:
        write_run(Path(out_dir), cfg, device, curve, summary, data.source)
    return curve, summary


def measure(model: torch.nn.Module, data: ProbeData, cfg: ClassifyConfig) -> dict:
    """Shift consistency on the whole eval split and attribution locality on a seeded sample of it."""
    net = cifar.Normalized(model).eval()
    out = {}
    for mode in ("circular", "zeros"):
        key = "shift_consistency_" + ("circular" if mode == "circular" else "padded")
        out[key] = predictive.shift_consistency(net, data.x_eval, mode=mode, max_shift=cfg.shift_max,
                                                seed=seeding.stream_seed(cfg.seed, "shift_eval"),
                                                batch_size=cfg.eval_batch_size)
    if cfg.attr_samples and cfg.attr_methods:
        pick = torch.randperm(len(data.y_eval), generator=seeding.generator(cfg.seed, "attr_sample"))[: cfg.attr_samples].to(data.x_eval.device)
        x = data.x_eval[pick]
        target = predictive.predict(net, x).argmax(1)
        for method in cfg.attr_methods:
            loc = predictive.attribution_locality(net, x, method=method, target=target, ig_steps=cfg.ig_steps)
            out[f"attr_center_share_{method}"] = loc["center_share"]
            out[f"attr_entropy_{method}"] = loc["entropy"]
    return out


def write_run(out: Path, cfg: ClassifyConfig, device, curve: pd.DataFrame, summary: dict, source: str) -> None:
    """Write the run folder ``out`` whole: its files go into a temp folder beside it, renamed into place when
    complete (a kill leaves no half-written run); an existing ``out`` is refused, never overwritten."""
    import os
    import shutil
    import tempfile

    if out.exists():
        raise BiasprobeError(f"{out} exists: this run ran already; remove that folder or use another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    try:
        runinfo.write_json(tmp / "config.json", {"config": cfg.to_dict(), "seed": cfg.seed,
                                                 "run_name": cfg.run_name(), "data_source": source,
                                                 "provenance": runinfo.provenance(device)})
        runinfo.write_parquet(tmp / ("steps.parquet" if cfg.steps is not None else "epochs.parquet"), curve)
        runinfo.write_json(tmp / "summary.json", summary)
        runinfo.write_atomic(tmp / "learning_curve.png", learning_curve_png(curve, cfg.eval_split))
        os.chmod(tmp, 0o777 & ~runinfo.umask())  # mkdtemp makes it 0700: give it the umask's mode
        if out.exists():
            raise BiasprobeError(f"{out} appeared while this run trained: remove it or use another --out")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def learning_curve_png(epochs_df: pd.DataFrame, ev: str = "test") -> bytes:
    """Two panels (seaborn): training loss and eval NLL; train and eval accuracy; per epoch, or per step for a
    steps table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    x = "step" if "step" in epochs_df else "epoch"
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    loss = epochs_df.melt(id_vars=x, value_vars=["train_loss", f"{ev}_nll"], var_name="curve")
    acc = epochs_df.melt(id_vars=x, value_vars=["train_acc", f"{ev}_acc"], var_name="curve")
    sns.lineplot(loss, x=x, y="value", hue="curve", ax=axes[0], marker="o", markersize=3)
    sns.lineplot(acc, x=x, y="value", hue="curve", ax=axes[1], marker="o", markersize=3)
    axes[0].set_ylabel("cross-entropy")
    axes[1].set_ylabel("accuracy")
    row = epochs_df.iloc[0]
    fig.suptitle(f"{row['arch']}  N={row['n_train']}  seed={row['seed']}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
