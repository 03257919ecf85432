"""Inspect one image's bytes: what it is, whether it decodes completely, and its EXIF orientation.

`probe_image` never raises for bad input: an empty, corrupt, truncated, oversized or non-image
payload comes back as `ImageFacts(valid=False, reason=...)`. Only the formats an image dataset
accepts are tried (Pillow's other plugins, such as EPS through Ghostscript, are never reached).
The pixel count is checked against the caller's limit from the header, before any decoding, and
Pillow's own decompression-bomb warning is raised as an error inside this call only (the
process-wide `Image.MAX_IMAGE_PIXELS` is left alone). The whole stream is decoded so that
truncation is caught; JPEGs are decoded at 1/8 scale in the DCT domain, which still reads every
entropy-coded byte at a fraction of the cost. Only the first frame of an animated or multi-page
file is decoded: it is the one the tensor stage uses.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import io
import warnings

from PIL import Image, ImageFile, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP")
_ORIENTATION_TAG = 0x0112
DEFAULT_MAX_PIXELS = 64_000_000


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """What `probe_image` found. `format`, `mode`, `width` and `height` are None when unknown."""

    format: str | None
    mode: str | None
    width: int | None
    height: int | None
    bytes: int
    content_hash: str
    exif_orientation: int | None
    valid: bool
    reason: str | None


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFacts:
    """Return the facts of an image given as bytes; invalid input gives `valid=False`.

    Raises `RuntimeError` only when something in the process has set Pillow's
    `ImageFile.LOAD_TRUNCATED_IMAGES`, under which truncated files would pass as valid.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process: "
                           "truncated images cannot be detected")
    facts = dict(format=None, mode=None, width=None, height=None, bytes=len(data),
                 content_hash=hashlib.sha256(data).hexdigest(), exif_orientation=None)
    if not data:
        return ImageFacts(**facts, valid=False, reason="empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Plugins warn about what they tolerate (broken EXIF, short TIFF tags); what matters
        # is reported through `reason`, so their warnings would only be noise in run logs.
        warnings.simplefilter("ignore", UserWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        except UnidentifiedImageError:
            reason = _unknown_reason(data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            reason = f"too many pixels: {exc}"
        except Exception as exc:  # noqa: BLE001 - plugins raise many types on hostile headers
            reason = f"corrupt or truncated file: {_describe(exc)}"
        else:
            reason = None
        if reason is not None:
            return ImageFacts(**facts, valid=False, reason=reason)
        with img:
            # Camera JPEGs with a multi-picture extension open as "MPO": they are JPEG files.
            facts.update(format="JPEG" if img.format == "MPO" else img.format, mode=img.mode,
                         width=img.width, height=img.height)
            reason = _decode(img, max_pixels) or _trailer_reason(img.format, data)
            facts["exif_orientation"] = _orientation(img)
    return ImageFacts(**facts, valid=reason is None, reason=reason)


def _decode(img: Image.Image, max_pixels: int) -> str | None:
    """Decode the first frame completely; return why it failed, or None."""
    w, h = img.size
    if w <= 0 or h <= 0:
        return f"invalid dimensions {w}x{h}"
    if w * h > max_pixels:
        return f"too many pixels: {w}x{h} = {w * h} over the limit of {max_pixels}"
    try:
        if img.format in ("JPEG", "MPO"):
            # Scaled DCT decoding: an 8x smaller output, but every Huffman-coded byte is read,
            # so truncation and corrupt scans are still found.
            img.draft(None, (max(1, w // 8), max(1, h // 8)))
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return f"too many pixels: {exc}"
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError,
        # struct.error, EOFError... for hostile data; every one of them means "not a valid image"
        text = _describe(exc)
        if "truncated" in text or isinstance(exc, EOFError):
            return f"truncated image: {text}"
        return f"corrupt image data: {text}"
    return None


def _trailer_reason(fmt: str | None, data: bytes) -> str | None:
    """The PNG decoder stops once the pixels are in, so a file cut just after them (its end
    chunk lost) decodes fine; require the end chunk, as every complete PNG has it. (GIF's
    one-byte trailer is not required: files with junk after it are common enough.)"""
    if fmt == "PNG":
        end = data.rfind(b"IEND")
        if end < 4 or data[end - 4:end] != b"\0\0\0\0" or len(data) < end + 8:
            return "truncated image: PNG end chunk (IEND) missing"
    return None


def _orientation(img: Image.Image) -> int | None:
    """The EXIF orientation (1..8), or None when absent or unreadable.

    EXIF is parsed leniently: a broken block must not invalidate pixels that decode fine.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" is expected here, and handled
            value = img.getexif().get(_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - the EXIF parser raises many types on broken blocks
        return None
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    return None


def _unknown_reason(data: bytes) -> str:
    try:
        # Incremental: a multi-byte character cut at the end of the sample is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096], final=False)
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "not an image: the content is text"
    return "not an image: unknown or unsupported format"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
