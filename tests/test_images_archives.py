"""Archive reading and archive manifests, on real zip, tar and tar.gz files built in the test.

Every test reads its archives with the working directory inside its own folder and checks that
no file appears anywhere (inside the test's folder or at the paths hostile members name).
"""

import os
import random
import tarfile
import uuid

import pyarrow as pa
import pytest

from data_platform.images.archives import ArchiveError, Limits, MemberError, iter_members
from data_platform.images.manifest import MANIFEST_SCHEMA, manifest_rows
from data_platform.images.probe import probe_image

from .image_samples import (
    FORMAT_MODES, encode, jpeg, picture, png, tree, write_tar, write_zip, zip_symlink,
)

MiB = 1 << 20


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A folder two levels down in the test's folder, made the working directory; on exit,
    nothing may have been created anywhere in the test's folder but by the test itself."""
    d = tmp_path / "a" / "b"
    d.mkdir(parents=True)
    monkeypatch.chdir(d)
    yield d


def read_all(path, limits=Limits()):
    """(name, reason, data) per member, reading every member that is valid; and the error."""
    out, error = [], None
    try:
        for m in iter_members(path, limits):
            data = None
            if m.valid:
                try:
                    data = m.read()
                except MemberError:
                    pass
            out.append((m.name, m.reason, data))
    except ArchiveError as exc:
        error = exc
    return out, error


def hostile_members(absolute: str):
    return [("cat/1.jpg", jpeg(1)), ("../evil.jpg", jpeg(2)), ("../../evil2.jpg", jpeg(2)),
            (absolute, jpeg(3)), ("dog/2.png", png(4))]


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_good_and_unsafe_members_nothing_written(work, tmp_path, kind):
    absolute = f"/tmp/{uuid.uuid4().hex}/abs.jpg"
    members = hostile_members(absolute) + [("C:/drive.jpg", jpeg()), ("a\\..\\..\\b.jpg", jpeg())]
    path = work / f"upload.{kind}"
    if kind == "zip":
        write_zip(path, members + [("cat/", b""), zip_symlink("link.jpg", "/etc/passwd")])
    else:
        write_tar(path, members + [("link.jpg", b"", tarfile.SYMTYPE, "/etc/passwd"),
                                   ("hard.jpg", b"", tarfile.LNKTYPE, "cat/1.jpg"),
                                   ("dev", b"", tarfile.CHRTYPE), ("fifo", b"", tarfile.FIFOTYPE),
                                   ("cat", b"", tarfile.DIRTYPE)], gz=kind == "tar.gz")
    before = tree(tmp_path)
    got, error = read_all(path)
    assert error is None
    assert tree(tmp_path) == before
    assert not (tmp_path / "a" / "evil.jpg").exists() and not (tmp_path / "evil2.jpg").exists()
    reasons = {name: reason for name, reason, _ in got}
    data = {name: d for name, _, d in got}
    assert data["cat/1.jpg"] == jpeg(1) and data["dog/2.png"] == png(4)
    assert reasons["cat/1.jpg"] is None and reasons["dog/2.png"] is None
    assert reasons["../evil.jpg"] == "unsafe name: '..' component (path traversal)"
    assert reasons["../../evil2.jpg"] == "unsafe name: '..' component (path traversal)"
    assert reasons[absolute] == "unsafe name: absolute path"
    assert reasons["C:/drive.jpg"] == "unsafe name: drive letter"
    assert reasons["a\\..\\..\\b.jpg"] == "unsafe name: backslash in path"
    assert reasons["link.jpg"] == "symlink member"
    assert "cat" not in reasons and "cat/" not in reasons  # directories are skipped
    if kind != "zip":
        assert reasons["hard.jpg"] == "hardlink member"
        assert reasons["dev"] == "device member"
        assert reasons["fifo"] == "FIFO member"
    assert all(d is None for name, r, d in got if r is not None)
    assert not os.path.exists(os.path.dirname(absolute))


def test_zip_bomb_member_is_refused_without_being_inflated(work):
    zeros = bytes(20 * MiB)  # deflates about 1000:1
    path = write_zip(work / "bomb.zip", [("zeros.jpg", zeros), ("ok.jpg", jpeg())])
    assert path.stat().st_size < 100_000
    got, error = read_all(path)
    assert error is None
    (name, reason, data), ok = got
    assert name == "zeros.jpg" and data is None
    assert reason.startswith("compression ratio 10") and "zip bomb" in reason, reason
    assert ok == ("ok.jpg", None, jpeg())


def test_tar_gz_bomb_member_is_stopped_while_decompressing(work):
    """A gzip stream has no per-member sizes: the ratio is judged while reading."""
    path = write_tar(work / "bomb.tgz", [("zeros.jpg", bytes(40 * MiB)), ("ok.jpg", jpeg())],
                     gz=True)
    members = iter_members(path)
    bomb = next(members)
    assert bomb.valid and bomb.size == 40 * MiB  # nothing in the header gives it away
    with pytest.raises(MemberError, match="compression ratio over 100"):
        bomb.read()
    assert not bomb.valid and "zip bomb" in bomb.reason
    ok = next(members)
    assert ok.read() == jpeg()
    assert list(members) == []


def test_header_sizes_are_not_trusted(work):
    """A zip whose headers understate a member's size: the reader never returns more than the
    header says, and the member is refused as corrupt."""
    path = write_zip(work / "liar.zip", [("big.jpg", b"a" * 5000), ("ok.jpg", jpeg())])
    raw = bytearray(path.read_bytes())
    local, central = raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")
    raw[local + 22:local + 26] = (10).to_bytes(4, "little")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    got, error = read_all(path)
    assert error is None
    (name, reason, data), ok = got
    assert name == "big.jpg" and data is None
    assert reason.startswith("corrupt or unsupported member data"), reason
    assert ok == ("ok.jpg", None, jpeg())


def test_member_size_cap(work):
    limits = Limits(max_member_bytes=1000)
    for kind in ("zip", "tgz"):
        path = work / f"big.{kind}"
        members = [("big.jpg", b"x" * 2000), ("small.jpg", b"y" * 500)]
        write_zip(path, members) if kind == "zip" else write_tar(path, members, gz=True)
        got, error = read_all(path, limits)
        assert error is None
        assert got[0][1] == "member too large: 2000 bytes declared, cap 1000"
        assert got[1] == ("small.jpg", None, b"y" * 500)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_total_and_count_caps_stop_the_archive(work, kind):
    members = [(f"cat/{i}.jpg", bytes([i]) * 1000) for i in range(10)]
    path = work / f"many.{kind}"
    write_zip(path, members) if kind == "zip" else write_tar(path, members, gz=True)
    got, error = read_all(path, Limits(max_members=4))
    assert [g[0] for g in got] == [f"cat/{i}.jpg" for i in range(4)]
    assert "more than 4 members" in str(error)
    got, error = read_all(path, Limits(max_total_bytes=3500))
    assert [g[2] for g in got] == [bytes([i]) * 1000 for i in range(3)]
    assert "expands past the total cap of 3500 bytes at cat/3.jpg" in str(error)


def test_truncated_and_corrupt_archives(work):
    members = [(f"cat/{i}.jpg", jpeg(i, size=(160, 120))) for i in range(6)]
    tgz = write_tar(work / "ok.tgz", members, gz=True).read_bytes()
    (work / "cut.tgz").write_bytes(tgz[: len(tgz) // 2])
    got, error = read_all(work / "cut.tgz")
    assert 1 <= len(got) < 6 and isinstance(error, ArchiveError)
    assert all(d == members[i][1] for i, (_, r, d) in enumerate(got) if r is None)
    assert "truncated" in str(error) or "ended" in str(error), error

    (work / "tail.tgz").write_bytes(tgz[:-4])  # only the gzip length trailer lost
    got, error = read_all(work / "tail.tgz")
    assert len(got) == 6 and "after the tar's end" in str(error)

    tar = write_tar(work / "ok.tar", members, gz=False).read_bytes()
    # Cut right after the last member's data block: every member is whole, the end is missing.
    cut = (len(tar.rstrip(b"\0")) + 511) // 512 * 512
    assert cut <= len(tar) - 1024
    (work / "cut.tar").write_bytes(tar[:cut])
    got, error = read_all(work / "cut.tar")
    assert len(got) == 6 and "no end-of-archive block" in str(error)
    (work / "mid.tar").write_bytes(tar[: len(tar) // 2])
    got, error = read_all(work / "mid.tar")
    assert len(got) < 6 and "truncated" in str(error) and got[-1][1].startswith("corrupt or")

    zipped = write_zip(work / "ok.zip", members).read_bytes()
    for name, content in [("cut.zip", zipped[:-30]), ("empty.zip", b""),
                          ("text.zip", b"just text"), ("text.tar", b"hello " * 300),
                          ("noise.tgz", b"\x1f\x8b" + bytes(range(256)) * 4)]:
        (work / name).write_bytes(content)
        got, error = read_all(work / name)
        assert got == [] and isinstance(error, ArchiveError), name


def test_zip_member_with_bad_crc_is_invalid_and_the_rest_is_read(work):
    path = write_zip(work / "crc.zip", [("a.jpg", jpeg(1)), ("b.jpg", jpeg(2))])
    raw = bytearray(path.read_bytes())
    raw[30 + len("a.jpg") + 100] ^= 0xFF  # inside a.jpg's compressed data
    path.write_bytes(bytes(raw))
    got, error = read_all(path)
    assert error is None
    assert got[0][0] == "a.jpg" and got[0][1].startswith("corrupt or unsupported member data")
    assert got[1] == ("b.jpg", None, jpeg(2))


def test_duplicate_member_names_are_reported(work):
    path = work / "dup.tar"
    write_tar(path, [("cat/a.jpg", jpeg(1)), ("cat/a.jpg", jpeg(2))], gz=False)
    got, _ = read_all(path)
    assert [r for _, r, _ in got] == [None, "duplicate member name"]


def test_tar_member_read_after_the_iterator_moved_on_is_refused(work):
    path = write_tar(work / "seq.tgz", [("a.jpg", jpeg(1)), ("b.jpg", jpeg(2))], gz=True)
    first, second = list(iter_members(path))
    with pytest.raises(ArchiveError, match="moved on"):
        first.read()


# ------------------------------------------------------------------------------ manifest rows

def test_archive_manifest_has_a_row_per_member(work, tmp_path):
    members = hostile_members("/abs.jpg") + [
        ("train/cat/3.jpg", jpeg(5)), ("./val/dog/4.jpg", jpeg(6)), ("notes.txt", b"hi"),
        ("inner.zip", b"PK\x05\x06" + bytes(18)), ("flat.jpg", jpeg(7)), ("fake.jpg", b"text"),
        ("zeros.jpg", bytes(20 * MiB))]
    path = write_zip(work / "upload.zip", members)
    before = tree(tmp_path)
    rows = list(manifest_rows(path, key="batches/pets/upload.zip",
                              labels={"flat.jpg": "bird"}, max_pixels=1_000_000))
    assert tree(tmp_path) == before
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    assert table.num_rows == len(members)
    by = {r["member"]: r for r in rows}
    assert all(r["key"] == "batches/pets/upload.zip" for r in rows)
    assert by["cat/1.jpg"]["valid"] and by["cat/1.jpg"]["label"] == "cat"
    assert by["cat/1.jpg"]["split"] in {"train", "val", "test"}
    assert (by["dog/2.png"]["format"], by["dog/2.png"]["label"]) == ("PNG", "dog")
    assert (by["train/cat/3.jpg"]["label"], by["train/cat/3.jpg"]["split"]) == ("cat", "train")
    assert (by["./val/dog/4.jpg"]["label"], by["./val/dog/4.jpg"]["split"]) == ("dog", "val")
    assert by["flat.jpg"]["label"] == "bird"
    assert by["fake.jpg"]["reason"] == "not an image: the content is text"
    for name, gist in [("../evil.jpg", "unsafe name"), ("/abs.jpg", "unsafe name: absolute"),
                       ("notes.txt", "not an image file: extension '.txt'"),
                       ("inner.zip", "nested archive"), ("zeros.jpg", "compression ratio")]:
        row = by[name]
        assert not row["valid"] and row["reason"].startswith(gist), row
        assert row["content_hash"] is None and row["width"] is None
    assert by["../evil.jpg"]["label"] is None and by["../evil.jpg"]["split"] is None
    assert by["zeros.jpg"]["bytes"] == 20 * MiB and by["zeros.jpg"]["label"] == "pets"


def test_archive_manifest_label_falls_back_to_the_archive_key(work):
    path = write_tar(work / "u.tgz", [("a.jpg", jpeg(1)), ("sub/b.jpg", jpeg(2))], gz=True)
    rows = list(manifest_rows(path, key="cat/u.tgz"))
    assert [(r["member"], r["label"], r["valid"]) for r in rows] == [
        ("a.jpg", "cat", True), ("sub/b.jpg", "sub", True)]
    rows = list(manifest_rows(path, key="u.tgz", dataset_prefix_label=False))
    assert [r["label"] for r in rows] == [None, None]


def test_truncated_archive_manifest_yields_rows_then_fails(work):
    members = [(f"cat/{i}.jpg", jpeg(i, size=(160, 120))) for i in range(6)]
    raw = write_tar(work / "ok.tgz", members, gz=True).read_bytes()
    (work / "cut.tgz").write_bytes(raw[: len(raw) // 2])
    rows = []
    with pytest.raises(ArchiveError, match="cut.tgz"):
        for row in manifest_rows(work / "cut.tgz", key="cut.tgz"):
            rows.append(row)
    assert 1 <= len(rows) < 6
    assert all(r["valid"] for r in rows[:-1])


# ------------------------------------------------------------------------------- robustness

def test_unsupported_zip_version_is_an_archive_error(work):
    path = write_zip(work / "v.zip", [("a.jpg", jpeg())])
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")
    raw[central + 6] = 99  # "version needed to extract": 9.9 (zipfile raises NotImplementedError)
    path.write_bytes(bytes(raw))
    got, error = read_all(path)
    assert got == [] and "zip file version" in str(error)


def mutations(data: bytes, rng: random.Random, n: int):
    """Seeded damage: cuts at random points, and a few random bytes overwritten."""
    for _ in range(n):
        if rng.random() < 0.3:
            yield data[:rng.randrange(len(data))]
            continue
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        yield bytes(b)


def test_damaged_archives_and_images_raise_only_our_errors(work):
    """Found a zipfile NotImplementedError escaping once; every exception must be ours."""
    rng = random.Random(7)
    members = [(f"cat/{i}.jpg", jpeg(i)) for i in range(3)]
    sources = {"zip": write_zip(work / "s.zip", members).read_bytes(),
               "tar": write_tar(work / "s.tar", members, gz=False).read_bytes(),
               "tgz": write_tar(work / "s.tgz", members, gz=True).read_bytes()}
    outcomes = set()
    for kind, data in sources.items():
        for i, damaged in enumerate(mutations(data, rng, 150)):
            path = work / f"d{i}.{kind}"
            path.write_bytes(damaged)
            got, error = read_all(path)  # anything but ArchiveError/MemberError fails here
            outcomes.add(error is None)
            path.unlink()
    assert outcomes == {True, False}
    images = [encode(picture(mode), fmt) for fmt, mode in FORMAT_MODES]
    valid = []
    for data in images:
        for damaged in mutations(data, rng, 20):
            valid.append(probe_image(damaged, max_pixels=1_000_000).valid)
    assert True in valid and False in valid
