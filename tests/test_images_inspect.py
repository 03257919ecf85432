"""Image probing and manifest rows of single uploaded images, on real files made with Pillow."""

import hashlib
import io
import warnings
from collections import Counter

import pyarrow as pa
import pytest
from PIL import Image, ImageFile

from data_platform.images.manifest import (
    MANIFEST_SCHEMA, load_labels_csv, manifest_rows, split_for_hash,
)
from data_platform.images.probe import probe_image

from .image_samples import EXT, FORMAT_MODES, encode, jpeg, picture, png

MAX = 1_000_000


@pytest.mark.parametrize("fmt,mode", FORMAT_MODES, ids=[f"{f}-{m}" for f, m in FORMAT_MODES])
def test_every_format_and_mode_is_described(fmt, mode):
    data = encode(picture(mode, (64, 48)), fmt)
    facts = probe_image(data, max_pixels=MAX)
    assert (facts.format, facts.mode, facts.width, facts.height) == (fmt, mode, 64, 48)
    assert facts.valid and facts.reason is None
    assert facts.bytes == len(data)
    assert facts.content_hash == hashlib.sha256(data).hexdigest()
    assert facts.exif_orientation is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_images_are_invalid(fmt, keep):
    data = encode(picture("RGB", (320, 240)), fmt)
    facts = probe_image(data[: int(len(data) * keep)], max_pixels=MAX)
    assert not facts.valid and facts.format == fmt
    assert facts.reason.startswith("truncated image"), facts.reason


def test_png_without_its_end_chunk_is_truncated():
    """Pillow stops reading once the pixels are decoded; the lost IEND chunk is ours to find."""
    data = png(size=(320, 240))
    assert not probe_image(data[:-12], max_pixels=MAX).valid
    assert probe_image(data + b"trailing bytes", max_pixels=MAX).valid


def test_truncated_jpeg_is_found_by_the_reduced_decode_too():
    """A 2000x1500 JPEG is decoded at 1/8 scale; a cut in its last scan is still seen."""
    data = jpeg(size=(2000, 1500))
    whole = probe_image(data, max_pixels=10_000_000)
    assert whole.valid and (whole.width, whole.height) == (2000, 1500)
    assert probe_image(data[:-200], max_pixels=10_000_000).reason.startswith("truncated image")


def test_corrupt_image_data_is_invalid():
    data = bytearray(jpeg(size=(320, 240)))
    data[1200:1968] = bytes(range(256)) * 3  # garbage in the middle of the entropy-coded scan
    facts = probe_image(bytes(data), max_pixels=MAX)
    assert not facts.valid and facts.reason.startswith("corrupt image data"), facts.reason


@pytest.mark.parametrize("data,gist", [
    (b"", "empty file"),
    (b"name,value\nhello,1\n" * 20, "not an image: the content is text"),
    (bytes(range(256)) * 8, "not an image: unknown or unsupported format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),  # EPS: never opened
    (jpeg()[:200], "corrupt or truncated file"),
])
def test_non_images_are_invalid_with_a_reason(data, gist):
    facts = probe_image(data, max_pixels=MAX)
    assert not facts.valid and facts.format is None
    assert facts.reason.startswith(gist), facts.reason
    assert facts.bytes == len(data) and len(facts.content_hash) == 64


def test_pixel_count_is_checked_from_the_header_before_decoding():
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 MP in ~50 KB
    assert len(bomb) < 100_000
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's warning must not escape either
        facts = probe_image(bomb, max_pixels=MAX)
        small = probe_image(encode(Image.new("L", (2000, 1000)), "PNG"), max_pixels=MAX)
        # Over Pillow's own limit (~89 MP) but under ours: Pillow's warning becomes an error.
        pillow = probe_image(encode(Image.new("1", (10000, 10000)), "PNG"),
                             max_pixels=200_000_000)
    assert not facts.valid and facts.reason.startswith("too many pixels"), facts.reason
    assert (facts.width, facts.height) == (None, None)
    assert small.reason == "too many pixels: 2000x1000 = 2000000 over the limit of 1000000"
    assert (small.width, small.height) == (2000, 1000)
    assert not pillow.valid and pillow.reason.startswith("too many pixels"), pillow.reason
    assert Image.MAX_IMAGE_PIXELS == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_exif_orientation_and_broken_exif():
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = probe_image(jpeg(exif=exif.tobytes()), max_pixels=MAX)
    assert rotated.valid and rotated.exif_orientation == 6
    broken_blocks = [b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x01\x12garbage",
                     b"Exif\x00\x00II*\x00\xff\xff\xff\x7f", b"Exif\x00\x00", b"\xff" * 40]
    for block in broken_blocks:
        facts = probe_image(jpeg(exif=block), max_pixels=MAX)
        assert facts.valid and facts.exif_orientation is None, (block, facts)
    out_of_range = Image.Exif()
    out_of_range[0x0112] = 9
    assert probe_image(jpeg(exif=out_of_range.tobytes()), max_pixels=MAX).exif_orientation is None


def test_truncation_tolerance_set_by_someone_else_is_refused(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        probe_image(jpeg(), max_pixels=MAX)


# ------------------------------------------------------------------------- single-file manifest

def one_row(tmp_path, key, data, **kwargs):
    path = tmp_path / "upload"
    path.write_bytes(data)
    (row,) = list(manifest_rows(path, key=key, max_pixels=MAX, **kwargs))
    pa.Table.from_pylist([row], schema=MANIFEST_SCHEMA)  # the row fits the schema
    assert list(row) == MANIFEST_SCHEMA.names
    return row


def test_single_image_row_takes_label_and_split_from_folders(tmp_path):
    data = jpeg()
    row = one_row(tmp_path, "cat/x.jpg", data)
    assert row | {"split": None} == {
        "key": "cat/x.jpg", "member": None, "format": "JPEG", "mode": "RGB", "width": 64,
        "height": 48, "bytes": len(data), "content_hash": hashlib.sha256(data).hexdigest(),
        "exif_orientation": None, "label": "cat", "split": None, "valid": True, "reason": None}
    assert row["split"] == split_for_hash(row["content_hash"])
    assert one_row(tmp_path, "train/dog/x.jpg", data)["split"] == "train"
    assert one_row(tmp_path, "dog/validation/x.jpg", data) | {"key": ""} == row | {
        "key": "", "label": "dog", "split": "val"}
    assert one_row(tmp_path, "x.jpg", data)["label"] is None
    assert one_row(tmp_path, "cat/x.jpg", data, dataset_prefix_label=False)["label"] is None
    assert one_row(tmp_path, "cat/x.jpg", data, labels={"cat/x.jpg": "tabby"})["label"] == "tabby"


def test_wrong_extension_and_bad_files_become_invalid_rows(tmp_path):
    text = one_row(tmp_path, "cat/notes.txt", b"not an image")
    assert (text["valid"], text["reason"]) == (False, "not an image file: extension '.txt'")
    assert text["bytes"] == 12 and text["content_hash"] is None
    fake = one_row(tmp_path, "cat/fake.jpg", b"just some text\n")
    assert (fake["valid"], fake["reason"]) == (False, "not an image: the content is text")
    assert fake["content_hash"] == hashlib.sha256(b"just some text\n").hexdigest()
    assert one_row(tmp_path, "cat/empty.png", b"")["reason"] == "empty file"
    # A PNG named .jpg is still an image: the content decides the format.
    assert one_row(tmp_path, "cat/named.jpg", png())["format"] == "PNG"


def test_split_from_hash_is_deterministic_and_follows_the_fractions():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)]
    first = [split_for_hash(h) for h in hashes]
    assert first == [split_for_hash(h) for h in hashes]
    counts = Counter(first)
    assert 740 <= counts["train"] <= 860 and 60 <= counts["val"] <= 140
    assert 60 <= counts["test"] <= 140
    halves = Counter(split_for_hash(h, {"a": 0.5, "b": 0.5}) for h in hashes)
    assert 440 <= halves["a"] <= 560
    assert {split_for_hash(h, {"only": 1.0}) for h in hashes} == {"only"}


def test_bad_split_fractions_are_refused(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg())
    for bad in ({"train": 0.8, "val": 0.1}, {"train": 1.2, "val": -0.2}, {}):
        with pytest.raises(ValueError, match="split fractions"):
            list(manifest_rows(path, key="x.jpg", split=bad))


def test_labels_csv(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text("path,label,notes\ncat/x.jpg, tabby ,\nbatch.zip/a.jpg,dog,\n"
                    "cat/x.jpg,tabby,again\n", encoding="utf-8")
    assert load_labels_csv(good) == {"cat/x.jpg": "tabby", "batch.zip/a.jpg": "dog"}
    for body, gist in [("file,label\nx,y\n", "missing column"),
                       ("path,label\nx,\n", "line 2: empty"),
                       ("path,label\nx,a\nx,b\n", "line 3: 'x' labelled both")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(body, encoding="utf-8")
        with pytest.raises(ValueError, match=gist):
            load_labels_csv(bad)


def test_rows_of_every_format_fit_the_schema(tmp_path):
    rows = []
    for i, (fmt, mode) in enumerate(FORMAT_MODES):
        path = tmp_path / f"{i}.{EXT[fmt]}"
        path.write_bytes(encode(picture(mode), fmt))
        rows += manifest_rows(path, key=f"label/{path.name}", max_pixels=MAX)
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    assert table.num_rows == len(FORMAT_MODES)
    assert set(table.column("format").to_pylist()) == set(EXT)
    assert all(table.column("valid").to_pylist())
    assert str(table.schema.field("width").type) == "int32"
    assert str(table.schema.field("bytes").type) == "int64"


def test_no_global_pillow_state_changes(tmp_path):
    """The probe works inside warnings.catch_warnings; nothing process-wide is left changed."""
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    probe_image(encode(Image.new("1", (20000, 20000)), "PNG"), max_pixels=MAX)
    probe_image(io.BytesIO(jpeg()).getvalue()[:-100], max_pixels=MAX)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES,
            list(warnings.filters)) == before
