"""Image loading, built-in names, resizing and cropping. Every image here is a float32 tensor (C, H, W) in [0, 1].

Sources (``load_image(name_or_path)``):

- a file: PNG / JPEG / BMP / GIF ... through Pillow, TIFF through tifffile (keeps 16-bit and float data);
- a scikit-image sample by name (``astronaut``, ``camera``, ``coffee``, ``chelsea``, ``rocket`` ...), bundled
  with scikit-image, so they work offline;
- a Deep Image Prior test image by short name (``F16``, ``kate``, ``kate_mask``, ``vase``, ``zebra`` ...), read
  from the shared data folder: ``$BIASPROBE_DATA`` if set, else ``<repo root>/../shared/data``, sub-folder ``dip/``
  (same file names as the official repository, github.com/DmitryUlyanov/deep-image-prior, ``data/``);
- an image of a standard colour denoising set as ``SET/STEM`` (``Kodak24/kodim05``, ``CBSD68/101085``), read from
  the shared data folder's ``images/SET/STEM.png``: the population a study draws its images from
  (:func:`population`, :func:`draw_images`).

Conversion to [0, 1]: 8-bit / 255, 16-bit / 65535 (16-bit grayscale PNG and 16-bit TIFF keep full precision;
Pillow reads 16-bit *colour* PNGs as 8-bit, i.e. the high byte, which is the right scale at 8-bit precision: a
warning says so), bool as 0/1, float as is (clipped to [0, 1]). Grayscale stays 1 channel; palette images become
RGB; an alpha channel is dropped with a warning.

Geometry, as in DIP (``utils/common_utils.py``): :func:`resize_short_side` resizes so the short side is ``s``
(Pillow's Lanczos filter when shrinking, i.e. DIP's ``Image.ANTIALIAS``; bicubic when enlarging, as DIP's
``get_image``), then centre-crops to ``s x s``; :func:`crop_to_multiple` centre-crops so H and W are multiples
of ``m`` (DIP's ``crop_image(img, d=32)``). :func:`prepare_image` does both, in that order; masks take the same
path with nearest-neighbour resizing (:func:`load_mask`). Resizing runs on float data channel by channel
(Pillow mode ``F``), so nothing is rounded to 8 bits.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from biasprobe.errors import BiasprobeError

# short name -> path under <data>/dip/ (the official repository's data/ layout)
DIP_IMAGES: dict[str, str] = {
    "F16": "denoising/F16_GT.png",
    "snail": "denoising/snail.jpg",
    "kate": "inpainting/kate.png",
    "kate_mask": "inpainting/kate_mask.png",
    "vase": "inpainting/vase.png",
    "vase_mask": "inpainting/vase_mask.png",
    "kate_restoration": "restoration/kate.png",
    "zebra": "sr/zebra_GT.png",
    "zebra_crop": "sr/zebra_crop.png",
    "building": "feature_inversion/building.jpg",
    "monkey": "feature_inversion/monkey.jpg",
    "cave_flash": "flash_no_flash/cave01_00_flash.jpg",
    "cave_noflash": "flash_no_flash/cave01_01_noflash.jpg",
}

# scikit-image samples that ship inside the scikit-image wheel (no download)
SKIMAGE_IMAGES: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page",
    "retina", "rocket", "text",
)

_TIFF = {".tif", ".tiff"}

# the standard colour denoising sets under <data>/images/ (see its README): the population studies draw from
IMAGE_SETS: tuple[str, ...] = ("Kodak24", "CBSD68")


def data_dir() -> Path:
    """The shared data folder: ``$BIASPROBE_DATA`` if set, else ``<repo root>/../shared/data``."""
    env = os.environ.get("BIASPROBE_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[4] / "shared" / "data"


def list_builtin_images() -> list[str]:
    """All built-in names: DIP test images first, then scikit-image samples."""
    return list(DIP_IMAGES) + list(SKIMAGE_IMAGES)


def _warn(msg: str) -> None:
    warnings.warn(msg, UserWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------- conversion
def _array_to_chw(a: np.ndarray, what: str) -> torch.Tensor:
    """HW or HWC array of any common dtype -> float32 (C, H, W) in [0, 1]; alpha dropped with a warning."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise BiasprobeError(f"{what}: expected a 2-D image (H, W[, C]), got an array of shape {a.shape}; "
                             "use a single-frame image file")
    if a.shape[2] in (2, 4):
        _warn(f"{what}: alpha channel dropped (the image is used as {'grayscale' if a.shape[2] == 2 else 'RGB'})")
        a = a[:, :, : a.shape[2] - 1]
    if a.shape[2] not in (1, 3):
        raise BiasprobeError(f"{what}: {a.shape[2]} channels; only grayscale (1) or RGB (3) images are supported")
    if a.dtype == np.bool_:
        out = a.astype(np.float32)
    elif a.dtype == np.uint8:
        out = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.size and a.max() > 255):
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise BiasprobeError(f"{what}: integer values outside 0..65535; save it as an 8- or 16-bit image")
        out = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.integer):
        out = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float32)
        if not np.isfinite(out).all():
            raise BiasprobeError(f"{what}: the image has NaN or infinite values; fix the file")
        if out.size and (out.min() < 0 or out.max() > 1):
            _warn(f"{what}: float values outside [0, 1] clipped")
            out = out.clip(0, 1)
    else:
        raise BiasprobeError(f"{what}: unsupported pixel type {a.dtype}; save it as an 8- or 16-bit PNG")
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            raw = str(im.tile[0][3]) if im.tile and len(im.tile[0]) > 3 else ""  # e.g. 'RGB;16B'
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "PA":
                im = im.convert("RGBA")
            elif mode == "1":
                im = im.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
                im = im.convert("RGB")
            if mode in ("RGB", "RGBA") and ";16" in raw:
                _warn(f"{path}: 16-bit colour PNG read at 8-bit precision (Pillow keeps the high byte); "
                      "save it as 16-bit TIFF for full precision")
            a = np.array(im)
            if mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535:  # 16-bit data in a 32-bit mode
                a = a.astype(np.uint16)
            return a
    except FileNotFoundError:
        raise BiasprobeError(f"no such image file: {path}; check the path") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BiasprobeError(f"cannot read {path} as an image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                             "give a PNG, JPEG or TIFF file") from None


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        a = tifffile.imread(path)
    except FileNotFoundError:
        raise BiasprobeError(f"no such image file: {path}; check the path") from None
    except Exception as e:  # tifffile raises several types for bad files
        raise BiasprobeError(f"cannot read {path} as a TIFF image ({type(e).__name__}); give a PNG, JPEG or TIFF file") from None
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 2, 3, 4):  # planar (C, H, W)
        a = a.transpose(1, 2, 0)
    return a


def _read_file(path: Path) -> torch.Tensor:
    if path.is_dir():
        raise BiasprobeError(f"{path} is a folder, not an image file; give the path of a PNG, JPEG or TIFF file")
    if not path.exists():
        raise BiasprobeError(f"no such image file: {path}; check the path")
    a = _read_tiff(path) if path.suffix.lower() in _TIFF else _read_pillow(path)
    return _array_to_chw(a, str(path))


def _dip_path(name: str) -> Path:
    root = data_dir()
    rel = DIP_IMAGES[name]
    for base in (root / "dip", root):
        if (base / rel).is_file():
            return base / rel
    where = "$BIASPROBE_DATA" if os.environ.get("BIASPROBE_DATA") else "the default shared data folder"
    raise BiasprobeError(f"DIP image {name!r} needs {rel} under {where} ({root}/dip/); set BIASPROBE_DATA to "
                         "the folder that holds dip/")


def population(sets=IMAGE_SETS) -> list[str]:
    """Every image of the named sets as ``SET/STEM`` names, sorted by set (in the order given) then file name."""
    out = []
    for name in sets:
        if name not in IMAGE_SETS:
            raise BiasprobeError(f"unknown image set {name!r}: choose from {', '.join(IMAGE_SETS)}")
        folder = data_dir() / "images" / name
        files = sorted(folder.glob("*.png"))
        if not files:
            raise BiasprobeError(f"image set {name!r} has no PNG files under {folder}; set BIASPROBE_DATA to the "
                                 "folder that holds images/")
        out += [f"{name}/{f.stem}" for f in files]
    return out


def draw_images(n: int, seed: int, sets=IMAGE_SETS, nested: bool = False) -> list[str]:
    """A simple random sample (without replacement) of ``n`` images from :func:`population` (``sets``), drawn with
    numpy's PCG64 seeded by ``seed``; returned in the order drawn. The same (n, seed, sets) always draws the same
    images, so a study's plan fixes its sample by stating them. ``nested``: the first ``n`` of one seeded
    permutation of the whole population, so a larger ``n`` keeps every image of a smaller one (a study can add
    images without losing its runs); the default keeps the draw the standard study's plan was made with."""
    pool = population(sets)
    if not isinstance(n, int) or not 1 <= n <= len(pool):
        raise BiasprobeError(f"cannot draw {n!r} images from {len(pool)} ({', '.join(sets)}): ask for 1..{len(pool)}")
    rng = np.random.default_rng(seed)
    if nested:
        return [pool[i] for i in rng.permutation(len(pool))[:n]]
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _set_image(name: str) -> Path | None:
    """The file of a ``SET/STEM`` name of a standard set (None if ``name`` is not of that form)."""
    head, _, stem = name.partition("/")
    if head not in IMAGE_SETS or not stem or "/" in stem:
        return None
    path = data_dir() / "images" / head / f"{stem}.png"
    if not path.is_file():
        raise BiasprobeError(f"no image {stem!r} in set {head} ({path}); list the set's folder for its names")
    return path


def _resolve_name(name: str) -> str | None:
    """Case-insensitive lookup of a built-in name; None if unknown."""
    table = {n.lower(): n for n in list_builtin_images()}
    return table.get(name.lower())


def _unknown(name: str) -> BiasprobeError:
    by_lower = {n.lower(): n for n in list_builtin_images()}
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=4, cutoff=0.5)]
    hint = f"did you mean {', '.join(close)}?" if close else "see list_builtin_images() for the built-in names"
    return BiasprobeError(f"no image file or built-in image named {name!r}; {hint}")


def _load_raw(name_or_path: str | os.PathLike) -> torch.Tensor:
    s = os.fspath(name_or_path)
    path = Path(s).expanduser()
    if path.exists():
        return _read_file(path)
    in_set = _set_image(s)
    if in_set is not None:
        return _read_file(in_set)
    builtin = _resolve_name(s)
    if builtin in DIP_IMAGES:
        return _read_file(_dip_path(builtin))
    if builtin is not None:
        import skimage.data

        return _array_to_chw(getattr(skimage.data, builtin)(), f"skimage.data.{builtin}")
    if os.sep in s or "/" in s or path.suffix:
        raise BiasprobeError(f"no such image file: {path}; check the path (built-in names: list_builtin_images())")
    raise _unknown(s)


def load_image(name_or_path: str | os.PathLike, size: int | None = None, multiple: int | None = None) -> torch.Tensor:
    """A file path or built-in name -> float32 (C, H, W) in [0, 1], C = 1 or 3.

    ``size``: resize so the short side is ``size`` and centre-crop to a square (:func:`resize_short_side`);
    ``multiple``: then centre-crop H, W to multiples of it (:func:`crop_to_multiple`). Both optional.
    """
    return prepare_image(_load_raw(name_or_path), size=size, multiple=multiple)


# ------------------------------------------------------------------------------------------------- geometry
def _check_img(img: torch.Tensor, fn: str) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() not in (3, 4):
        shape = tuple(img.shape) if hasattr(img, "shape") else type(img).__name__
        raise BiasprobeError(f"{fn}: expected an image tensor (C, H, W) or (B, C, H, W), got {shape}")


def center_crop(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre crop of the last two dims to (h, w); offsets floor((H - h)/2), floor((W - w)/2) as DIP's crop."""
    _check_img(img, "center_crop")
    H, W = img.shape[-2:]
    if not (0 < h <= H and 0 < w <= W):
        raise BiasprobeError(f"cannot crop a {H}x{W} image to {h}x{w}; ask for a size no larger than the image")
    top, left = (H - h) // 2, (W - w) // 2
    return img[..., top : top + h, left : left + w]


def resize(img: torch.Tensor, h: int, w: int, mode: str = "antialias") -> torch.Tensor:
    """Resize the last two dims to (h, w) with Pillow on float data (mode ``F``), channel by channel.

    ``mode``: ``antialias`` (Lanczos when shrinking, bicubic when enlarging, as DIP's ``get_image``),
    ``lanczos``, ``bicubic`` (Pillow's, a = -0.5, as DIP's SR baseline) or ``nearest``. Clamped to [0, 1].
    """
    from PIL import Image

    H, W = img.shape[-2:]
    if (H, W) == (h, w):
        return img
    if mode == "antialias":
        mode = "lanczos" if (h <= H and w <= W) else "bicubic"
    filters = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    if mode not in filters:
        raise ValueError(f"unknown resize mode {mode!r}")
    flat = img.detach().cpu().reshape(-1, H, W).numpy().astype(np.float32)
    out = np.stack([np.asarray(Image.fromarray(ch, mode="F").resize((w, h), filters[mode])) for ch in flat])
    out = torch.from_numpy(out).reshape(*img.shape[:-2], h, w).to(img.device, img.dtype)
    return out.clamp(0, 1)


def resize_short_side(img: torch.Tensor, s: int, mode: str = "antialias") -> torch.Tensor:
    """Resize so the short side is ``s`` (long side rounded to keep the aspect ratio), then centre-crop to s x s.

    ``mode='antialias'``: Pillow Lanczos when shrinking (DIP's ``Image.ANTIALIAS``), bicubic when enlarging;
    ``mode='nearest'`` for masks. Output clamped to [0, 1] (Lanczos and bicubic overshoot a little).
    """
    _check_img(img, "resize_short_side")
    if not isinstance(s, (int, np.integer)) or s < 1:
        raise BiasprobeError(f"image size must be a positive integer, got {s!r}")
    H, W = img.shape[-2:]
    if H <= W:
        h, w = int(s), max(int(s), round(W * s / H))
    else:
        h, w = max(int(s), round(H * s / W)), int(s)
    return center_crop(resize(img, h, w, mode), int(s), int(s))


def crop_to_multiple(img: torch.Tensor, m: int) -> torch.Tensor:
    """Centre-crop so H and W are multiples of ``m`` (DIP's ``crop_image(img, d=m)``)."""
    _check_img(img, "crop_to_multiple")
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise BiasprobeError(f"crop multiple must be a positive integer, got {m!r}")
    H, W = img.shape[-2:]
    h, w = H - H % m, W - W % m
    if h == 0 or w == 0:
        raise BiasprobeError(f"a {H}x{W} image has no crop that is a multiple of {m}; use a larger image or a smaller multiple")
    return center_crop(img, h, w)


def prepare_image(img: torch.Tensor, size: int | None = None, multiple: int | None = None,
                  mode: str = "antialias") -> torch.Tensor:
    """``resize_short_side(img, size)`` if size, then ``crop_to_multiple(img, multiple)`` if multiple."""
    if size is not None:
        img = resize_short_side(img, size, mode=mode)
    if multiple is not None:
        img = crop_to_multiple(img, multiple)
    return img


def load_mask(path_or_name: str | os.PathLike, size_like=None, size: int | None = None,
              multiple: int | None = None, native: tuple[int, int] | None = None) -> torch.Tensor:
    """A mask file or built-in name -> float32 (1, H, W) in {0, 1}; 1 (stored as 255) = known pixel.

    The mask takes the same path as its image (``size``, ``multiple`` as in :func:`load_image`) with
    nearest-neighbour resizing; colour masks are averaged over channels; then thresholded at 0.5. If
    ``size_like`` (a tensor (..., H, W) or a pair (H, W)) is given, the mask must end up that size. If ``native``
    (the image's size as loaded, before any resize) is given, the mask file must have that size: a mask made for
    another image would otherwise be stretched and cropped over this one without a word.
    """
    raw = _load_raw(path_or_name).mean(0, keepdim=True)
    if native is not None and tuple(raw.shape[-2:]) != tuple(native):
        raise BiasprobeError(
            f"mask {os.fspath(path_or_name)!r} is {raw.shape[-2]}x{raw.shape[-1]} but its image is "
            f"{native[0]}x{native[1]}: give the mask made for this image, or stretch it anyway with the task parameter "
            f"resize_mask=true (--task-param resize_mask=true)")
    m = (prepare_image(raw, size=size, multiple=multiple, mode="nearest") > 0.5).float()
    if size_like is not None:
        hw = tuple(size_like.shape[-2:]) if hasattr(size_like, "shape") else tuple(size_like)
        if tuple(m.shape[-2:]) != hw:
            raise BiasprobeError(
                f"mask {os.fspath(path_or_name)!r} is {m.shape[-2]}x{m.shape[-1]} but the image is {hw[0]}x{hw[1]}; "
                "load the mask with the same size/multiple as its image, or give a mask of the image's size")
    return m


# ------------------------------------------------------------------------------------------------- utilities
def to_numpy_hwc(img) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) tensor -> float32 (H, W, C) numpy array (numpy arrays pass through)."""
    if isinstance(img, np.ndarray):
        return img
    t = img.detach().float().cpu()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise BiasprobeError(f"to_numpy_hwc: expected one image, got a batch of {t.shape[0]}; index it first")
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise BiasprobeError(f"to_numpy_hwc: expected (C, H, W), got shape {tuple(t.shape)}")
    return t.permute(1, 2, 0).numpy()


def save_png(img, path: str | os.PathLike) -> None:
    """Write an image as an 8-bit PNG (atomically). ``img``: tensor (C, H, W) / (1, C, H, W) in [0, 1], or an
    (H, W[, C]) array, float in [0, 1] or uint8."""
    import io

    from PIL import Image

    from biasprobe.runinfo import write_atomic

    a = to_numpy_hwc(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    write_atomic(path, buf.getvalue())
