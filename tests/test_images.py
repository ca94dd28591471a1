import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from biasprobe.errors import BiasprobeError
from biasprobe.probes.dip.images import (
    center_crop,
    crop_to_multiple,
    data_dir,
    list_builtin_images,
    load_image,
    load_mask,
    resize_short_side,
    save_png,
    to_numpy_hwc,
)

HAVE_DIP = (data_dir() / "dip" / "inpainting" / "kate_mask.png").is_file()


def _png16(path, a):
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour)."""
    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_grayscale_and_rgb_png(tmp_path):
    g = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    Image.fromarray(g).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (1, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(g / 255.0).float())
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    y = load_image(str(tmp_path / "c.png"))
    assert y.shape == (3, 6, 7)
    assert torch.allclose(y, torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0).float())


def test_rgba_drops_alpha_with_warning(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0], a[..., 3] = 200, 10
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha"):
        x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 4, 4)
    assert torch.allclose(x[0], torch.full((4, 4), 200 / 255))  # colour kept, not premultiplied


def test_16bit_gray_png_and_tiff(tmp_path):
    g = (np.arange(12).reshape(3, 4) * 5000 + 7).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png")
    assert x.shape == (1, 3, 4)
    assert torch.allclose(x[0], torch.from_numpy(g / 65535.0).float())
    import tifffile

    rgb = (np.arange(3 * 4 * 3).reshape(3, 4, 3) * 1800 + 3).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", rgb)
    y = load_image(tmp_path / "c16.tif")
    assert y.shape == (3, 3, 4)
    assert torch.allclose(y, torch.from_numpy(rgb.transpose(2, 0, 1) / 65535.0).float())


def test_16bit_colour_png_scale(tmp_path):
    rgb = (np.arange(2 * 3 * 3).reshape(2, 3, 3) * 7000 + 300).astype(np.uint16)
    _png16(tmp_path / "c16.png", rgb)
    with pytest.warns(UserWarning, match="16-bit"):
        x = load_image(tmp_path / "c16.png")
    ref = torch.from_numpy(rgb.transpose(2, 0, 1) / 65535.0).float()
    assert (x - ref).abs().max() < 1 / 255 + 1e-6  # right scale, 8-bit precision


def test_palette_png(tmp_path):
    im = Image.new("P", (3, 2))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putdata([0, 1, 0, 1, 1, 0])
    im.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    assert x.shape == (3, 2, 3)
    assert x[0, 0, 0] == 1 and x[2, 0, 0] == 0 and x[2, 0, 1] == 1 and x[0, 0, 1] == 0


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(BiasprobeError, match="no such image file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(BiasprobeError, match="cannot read"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(BiasprobeError, match="astronaut"):
        load_image("astronot")
    with pytest.raises(BiasprobeError, match="F16"):
        load_image("F61")
    monkeypatch.setenv("BIASPROBE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(BiasprobeError, match="BIASPROBE_DATA"):
        load_image("kate")
    with pytest.raises(BiasprobeError) as e:
        load_image("zebraa")
    assert "\n" not in str(e.value)


def test_builtins():
    names = list_builtin_images()
    assert {"F16", "kate", "kate_mask", "vase", "zebra", "snail", "astronaut", "camera", "coffee"} <= set(names)
    cam = load_image("camera")
    assert cam.shape == (1, 512, 512) and 0 <= cam.min() and cam.max() <= 1
    assert load_image("astronaut").shape == (3, 512, 512)


@pytest.mark.skipif(not HAVE_DIP, reason="shared DIP data folder not present")
def test_dip_builtins():
    m = load_mask("kate_mask", (512, 512))
    assert m.shape == (1, 512, 512) and set(m.unique().tolist()) == {0.0, 1.0}
    assert 0.9 < m.mean() < 1  # mostly known pixels, a text-shaped hole
    assert load_image("zebra", multiple=32).shape == (3, 384, 576)  # README: 584x388 -> 576x384
    assert load_image("snail", multiple=32).shape == (3, 256, 384)


def test_resize_and_crop():
    x = torch.full((3, 40, 60), 0.3)
    y = resize_short_side(x, 16)
    assert y.shape == (3, 16, 16) and torch.allclose(y, torch.full_like(y, 0.3), atol=1e-5)
    assert resize_short_side(torch.rand(1, 30, 20), 50).shape == (1, 50, 50)  # enlarging works too
    z = torch.arange(388 * 584, dtype=torch.float32).reshape(1, 388, 584)
    c = crop_to_multiple(z, 32)
    assert c.shape == (1, 384, 576)
    assert c[0, 0, 0] == z[0, 2, 4]  # DIP: offsets floor((388-384)/2), floor((584-576)/2)
    assert center_crop(torch.zeros(1, 5, 5), 2, 2).shape == (1, 2, 2)
    with pytest.raises(BiasprobeError):
        crop_to_multiple(torch.zeros(1, 20, 20), 32)
    with pytest.raises(BiasprobeError):
        resize_short_side(x, 0)


def test_load_mask(tmp_path):
    m = np.full((40, 60), 255, np.uint8)
    m[10:20, 20:30] = 0
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", torch.zeros(3, 40, 60))
    assert mask.shape == (1, 40, 60) and mask.sum() == 40 * 60 - 100
    assert mask[0, 15, 25] == 0 and mask[0, 0, 0] == 1
    small = load_mask(tmp_path / "m.png", (20, 20), size=20)  # same resize path as the image, nearest
    assert small.shape == (1, 20, 20) and set(small.unique().tolist()) <= {0.0, 1.0} and small.min() == 0
    with pytest.raises(BiasprobeError, match="mask"):
        load_mask(tmp_path / "m.png", (32, 32))


def test_save_png_roundtrip(tmp_path):
    x = torch.rand(3, 8, 9)
    save_png(x, tmp_path / "o" / "x.png")
    y = load_image(tmp_path / "o" / "x.png")
    assert (x - y).abs().max() <= 0.5 / 255 + 1e-6
    save_png(torch.rand(1, 1, 4, 4), tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (1, 4, 4)
    assert to_numpy_hwc(x[None]).shape == (8, 9, 3)
