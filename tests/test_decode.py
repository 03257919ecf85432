"""Image decoding: every mode to RGB, EXIF orientations, reduced-size JPEG decode, crop and pad."""

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_platform.images.decode import DecodeError, DecodeSettings, _draft, decode, exif_orientation

RED = (255, 0, 0)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth, textured RGB image (gradients, blobs, mild noise): JPEG-realistic content."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize(
        (w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(base).astype(np.int16) + rng.normal(0, 4, (h, w, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def solid(mode: str, value, size=(40, 30)) -> Image.Image:
    return Image.new(mode, size, value)


def p_red() -> Image.Image:
    img = Image.new("P", (40, 30), 1)
    img.putpalette([0, 0, 255] + list(RED) + [0, 0, 0] * 254)
    return img


def p_transparent() -> Image.Image:
    img = p_red()
    img.info["transparency"] = 1  # the red index is transparent: composited on black
    return img


def i16(value: int) -> Image.Image:
    return Image.fromarray(np.full((30, 40), value, dtype=np.uint16))


MODES = [
    # (name, image, format, expected RGB, tolerance)
    ("RGB", solid("RGB", RED), "PNG", RED, 0),
    ("RGB jpeg", solid("RGB", RED), "JPEG", RED, 3),
    ("P", p_red(), "PNG", RED, 0),
    ("P transparent", p_transparent(), "PNG", (0, 0, 0), 0),
    ("P gif", p_red(), "GIF", RED, 0),
    ("RGBA opaque", solid("RGBA", RED + (255,)), "PNG", RED, 0),
    ("RGBA half", solid("RGBA", RED + (128,)), "PNG", (128, 0, 0), 1),
    ("RGBA clear", solid("RGBA", RED + (0,)), "PNG", (0, 0, 0), 0),
    ("LA", solid("LA", (200, 255)), "PNG", (200, 200, 200), 0),
    ("LA half", solid("LA", (200, 128)), "PNG", (100, 100, 100), 1),
    ("L", solid("L", 100), "PNG", (100, 100, 100), 0),
    ("L jpeg", solid("L", 100), "JPEG", (100, 100, 100), 2),
    ("1", solid("1", 1), "PNG", (255, 255, 255), 0),
    ("CMYK", solid("CMYK", (0, 255, 255, 0)), "TIFF", RED, 0),
    ("CMYK jpeg", solid("CMYK", (0, 255, 255, 0)), "JPEG", RED, 4),
    ("I;16 max", i16(65535), "PNG", (255, 255, 255), 0),
    ("I;16 mid", i16(32896), "PNG", (128, 128, 128), 0),
    ("I", solid("I", 65535), "TIFF", (255, 255, 255), 0),
    ("F unit", solid("F", 0.5), "TIFF", (128, 128, 128), 0),
    ("F 0..255", solid("F", 200.0), "TIFF", (200, 200, 200), 0),
]


@pytest.mark.parametrize("name,img,fmt,expected,tol", MODES, ids=[m[0] for m in MODES])
def test_every_mode_converts_to_rgb(name, img, fmt, expected, tol):
    data = encode(img, fmt)
    opened_mode = Image.open(io.BytesIO(data)).mode
    if name.startswith("I;16"):
        assert opened_mode.startswith("I;16") or opened_mode == "I", opened_mode
    out = decode(data, DecodeSettings(size=(16, 12)))
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - np.array(expected)).max()
    assert diff <= tol, (name, opened_mode, out[0, 0], expected)


def test_multiframe_gif_gives_first_frame():
    frames = [solid("RGB", RED), solid("RGB", (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode(data, DecodeSettings(size=(8, 8)))
    assert (out == RED).all()


def asymmetric() -> Image.Image:
    """64x48, four distinct quadrant colours: any flip or rotation changes it."""
    arr = np.zeros((48, 64, 3), dtype=np.uint8)
    arr[:24, :32] = (250, 10, 10)     # top-left: red
    arr[:24, 32:] = (10, 250, 10)     # top-right: green
    arr[24:, :32] = (10, 10, 250)     # bottom-left: blue
    arr[24:, 32:] = (250, 250, 10)    # bottom-right: yellow
    return Image.fromarray(arr)


def with_orientation(img: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes(), quality=98)


# Where the stored top-left (red) quadrant must appear once upright, from the EXIF definition
# of each orientation (row 0 / column 0 of the stored image -> visual side).
RED_LANDS = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(orientation):
    data = with_orientation(asymmetric(), orientation)
    upright = (48, 64) if orientation >= 5 else (64, 48)
    out = decode(data, DecodeSettings(size=upright))
    assert out.shape == (upright[1], upright[0], 3)
    h, w = out.shape[:2]
    corners = {"tl": out[2, 2], "tr": out[2, w - 3], "bl": out[h - 3, 2], "br": out[h - 3, w - 3]}
    red = [name for name, px in corners.items() if px[0] > 200 and px[1] < 60 and px[2] < 60]
    assert red == [RED_LANDS[orientation]], corners
    # Pillow's own exif_transpose as an independent oracle for the whole picture.
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.abs(out.astype(int) - expected).mean() < 1.0


def test_orientation_from_png_exif():
    data = with_orientation(asymmetric(), 6, fmt="PNG")
    out = decode(data, DecodeSettings(size=(48, 64)))
    assert tuple(out[2, 45]) == (250, 10, 10)  # red moved to the top right


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_out_of_range_orientation_means_upright(orientation):
    data = with_orientation(asymmetric(), orientation)
    out = decode(data, DecodeSettings(size=(64, 48)))
    assert out[2, 2, 0] > 200 and out[2, 2, 1] < 60


def test_broken_exif_survives():
    good = encode(asymmetric(), "JPEG", quality=98,
                  exif=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05\xff\xff")  # truncated IFD
    img = Image.open(io.BytesIO(good))
    assert exif_orientation(img) == 1
    out = decode(good, DecodeSettings(size=(64, 48)))
    assert out[2, 2, 0] > 200 and out[2, 2, 1] < 60


def reference(img: Image.Image, settings: DecodeSettings) -> np.ndarray:
    """The slow, obviously right result: full decode, then Pillow's own fit."""
    fitted = ImageOps.fit(img, settings.size, Image.Resampling.LANCZOS)
    return np.asarray(fitted).astype(int)


def test_draft_decode_of_large_jpeg_is_target_size_and_close_to_full_decode():
    img = photo(3000, 2000, seed=1)
    data = encode(img, "JPEG", quality=90)
    settings = DecodeSettings(size=(256, 256))
    opened = Image.open(io.BytesIO(data))
    _draft(opened, 1, settings)
    # 3000x2000 cropped to a square needs 384x256: 1/4 scale (750x500) is the smallest covering.
    assert opened.size == (750, 500)
    out = decode(data, settings)
    assert out.shape == (256, 256, 3)
    full = reference(Image.open(io.BytesIO(data)).convert("RGB"), settings)
    assert np.abs(out.astype(int) - full).mean() < 2.0


@pytest.mark.parametrize("fit,orientation,size", [
    ("crop", 1, (256, 256)), ("pad", 1, (256, 256)), ("crop", 6, (200, 300)),
    ("pad", 8, (300, 200)), ("crop", 1, (64, 400)),
])
def test_draft_always_covers_the_target(fit, orientation, size):
    data = with_orientation(photo(2400, 1600, seed=2), orientation)
    settings = DecodeSettings(size=size, fit=fit)
    opened = Image.open(io.BytesIO(data))
    _draft(opened, orientation, settings)
    swap = orientation >= 5
    full = (1600, 2400) if swap else (2400, 1600)
    drafted = opened.size[::-1] if swap else opened.size
    scale = (max if fit == "crop" else min)(size[0] / full[0], size[1] / full[1])
    needed = (full[0] * scale, full[1] * scale)
    assert drafted[0] >= needed[0] - 1e-6 and drafted[1] >= needed[1] - 1e-6, (drafted, needed)
    factor = full[0] // drafted[0]
    assert factor > 1, "every case here can be drafted"
    assert factor == 8 or drafted[0] / 2 < needed[0] or drafted[1] / 2 < needed[1]
    out = decode(data, settings)
    assert out.shape == (size[1], size[0], 3)
    expected = reference(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"),
                         settings) if fit == "crop" else None
    if expected is not None:
        assert np.abs(out.astype(int) - expected).mean() < 2.5


def test_small_images_are_not_drafted():
    data = encode(photo(640, 480), "JPEG", quality=90)
    opened = Image.open(io.BytesIO(data))
    _draft(opened, 1, DecodeSettings(size=(256, 256)))
    assert opened.size == (640, 480)


def test_pad_keeps_aspect_and_fills_with_pad_value():
    data = encode(solid("RGB", RED, size=(200, 100)), "PNG")
    out = decode(data, DecodeSettings(size=(64, 64), fit="pad", pad_value=(0, 0, 255)))
    assert (out[:16] == (0, 0, 255)).all() and (out[48:] == (0, 0, 255)).all()
    assert (out[16:48] == RED).all()


def test_crop_takes_the_centre():
    arr = np.zeros((100, 300, 3), dtype=np.uint8)
    arr[:, 100:200] = RED  # only the centre third is red
    out = decode(encode(Image.fromarray(arr), "PNG"), DecodeSettings(size=(32, 32), fit="crop"))
    # Antialiasing filters read slightly past the box: only the outermost columns may blend.
    assert (np.abs(out[:, 1:-1].astype(int) - RED) <= 1).all()
    assert (out[:, [0, -1], 0] > 200).all() and (out[:, :, 1:] == 0).all()


@pytest.mark.parametrize("data", [b"", b"not an image", encode(photo(200, 100), "JPEG")[:300],
                                  encode(solid("RGB", RED), "EPS")],
                         ids=["empty", "text", "truncated", "eps"])
def test_undecodable_bytes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode(data, DecodeSettings(size=(32, 32)))


def test_decompression_bomb_is_a_decode_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2x the limit is refused by Pillow
    with pytest.raises(DecodeError):
        decode(encode(photo(100, 50), "PNG"), DecodeSettings(size=(8, 8)))


def test_settings_validate():
    for bad in ({"fit": "stretch"}, {"resample": "magic"}, {"size": (0, 5)},
                {"pad_value": 300}, {"reducing_gap": 0.5}):
        with pytest.raises(ValueError):
            DecodeSettings(**bad)


def test_fingerprint_is_stable_and_specific():
    base = DecodeSettings()
    assert base.fingerprint() == DecodeSettings(size=[256, 256], pad_value=(0, 0, 0)).fingerprint()
    variants = [DecodeSettings(size=(224, 224)), DecodeSettings(fit="pad"),
                DecodeSettings(resample="lanczos"), DecodeSettings(pad_value=1),
                DecodeSettings(reducing_gap=None)]
    prints = {base.fingerprint()} | {v.fingerprint() for v in variants}
    assert len(prints) == 1 + len(variants)
    other = subprocess.run(
        [sys.executable, "-c", "from data_platform.images.decode import DecodeSettings as D; "
         "print(D().fingerprint())"], capture_output=True, text=True, timeout=60, check=True)
    assert other.stdout.strip() == base.fingerprint()
