"""Tensor shards: writer round trip, crash safety, incrementality, reader order/resume, S3, checks."""

import io
import json
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_platform.images.decode import DecodeSettings, decode
from data_platform.tensors import checks, writer as writer_module
from data_platform.tensors.index import InvalidIndex, load_index, sha256_file
from data_platform.tensors.reader import open_dataset
from data_platform.tensors.writer import Sample, write_tensors

SIZE = (12, 10)  # (width, height): images of exactly this size decode to their own pixels
SETTINGS = DecodeSettings(size=SIZE)
PER_SAMPLE = SIZE[0] * SIZE[1] * 3


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)


def png(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "PNG")
    return b.getvalue()


def make(seeds, split=lambda s: "val" if s % 4 == 0 else "train") -> list[Sample]:
    return [Sample(key=f"img/{s}.png", member=None, content_hash=f"h{s}", label=s % 3,
                   split=split(s), source=png(pixels(s))) for s in seeds]


class Counting:
    """The real decode, counting its calls (workers=1 runs it in this process)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, data, settings):
        self.calls += 1
        return decode(data, settings)


def files(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def test_round_trip_exact_pixels_labels_splits_and_stats(tmp_path):
    samples = make(range(23))
    summary = write_tensors(samples, tmp_path, SETTINGS, shard_bytes=5 * PER_SAMPLE)
    assert summary["samples"] == 23 and summary["shards"] == 5 and summary["decoded"] == 23
    ds = open_dataset(tmp_path)
    assert len(ds) == 23
    for i, s in enumerate(samples):
        img, label = ds[i]
        assert img.dtype == np.uint8 and np.array_equal(img, pixels(int(s.key[4:-4])))
        assert label == s.label and ds.info(i)["key"] == s.key
    assert np.array_equal(ds[-1][0], pixels(22))
    with pytest.raises(IndexError):
        ds[23]
    batches = list(ds.batches(10))
    assert [len(b) for b, _ in batches] == [10, 10, 3]
    assert np.array_equal(np.concatenate([b for b, _ in batches]),
                          np.stack([pixels(s) for s in range(23)]))
    val = open_dataset(tmp_path, split="val")
    assert [v.info(i)["key"] for v in [val] for i in range(len(val))] == \
        [f"img/{s}.png" for s in range(23) if s % 4 == 0]
    train = np.stack([pixels(s) for s in range(23) if s % 4]).reshape(-1, 3).astype(np.float64)
    assert np.allclose(summary["mean"], train.mean(axis=0), atol=1e-9)
    assert np.allclose(summary["std"], train.std(axis=0), atol=1e-9)
    header = json.loads((tmp_path / "index.json").read_text())
    assert header["stats"]["mean"] == summary["mean"] and header["shape"] == [10, 12, 3]
    loaded = np.load(tmp_path / header["shards"][0]["file"], mmap_mode="r")
    assert loaded.shape == (5, 10, 12, 3) and loaded.dtype == np.uint8


def test_workers_give_identical_shards(tmp_path):
    sources = tmp_path / "src"
    sources.mkdir()
    samples = []
    for s in range(9):
        path = sources / f"{s}.png"
        path.write_bytes(png(pixels(s)))
        # paths are read in the workers; a lambda cannot be pickled, so it is read here
        source = path if s % 2 else (lambda p=path: p.read_bytes())
        samples.append(Sample(f"k{s}", None, f"h{s}", 0, "train", source))
    one = write_tensors(samples, tmp_path / "one", SETTINGS, shard_bytes=4 * PER_SAMPLE)
    two = write_tensors(samples, tmp_path / "two", SETTINGS, shard_bytes=4 * PER_SAMPLE,
                        workers=2)
    # A live thread makes the pool use forkserver instead of fork (see pool._context).
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait)
    busy.start()
    try:
        three = write_tensors(samples, tmp_path / "three", SETTINGS, shard_bytes=4 * PER_SAMPLE,
                              workers=2)
    finally:
        stop.set()
        busy.join()
    shas = [[s["sha256"] for s in load_index(tmp_path / d).shards]
            for d in ("one", "two", "three")]
    assert shas[0] == shas[1] == shas[2] and len(shas[0]) == 3
    assert one["mean"] == two["mean"] == three["mean"] and two["decoded"] == 9


def test_failure_mid_write_leaves_previous_index_valid(tmp_path):
    write_tensors(make(range(6)), tmp_path, SETTINGS, shard_bytes=2 * PER_SAMPLE)
    before = files(tmp_path)

    def dies():
        raise RuntimeError("killed")
    new = make(range(6, 12))
    new.insert(4, Sample("late", None, "hlate", 0, "train", dies))  # after two shards flushed
    with pytest.raises(RuntimeError, match="killed"):
        write_tensors(make(range(6)) + new, tmp_path, SETTINGS, shard_bytes=2 * PER_SAMPLE,
                      previous_index=tmp_path)
    assert files(tmp_path) == before  # nothing of the failed run remains, nothing old changed
    ds = open_dataset(tmp_path)
    assert len(ds) == 6 and np.array_equal(ds[5][0], pixels(5))
    assert checks.shards_match(tmp_path)[0]


KILLED_WRITER = """
import sys, time
from pathlib import Path
from data_platform.images.decode import DecodeSettings
from data_platform.tensors.writer import write_tensors
out, marker, blobs = Path(sys.argv[1]), Path(sys.argv[2]), sorted(Path(sys.argv[3]).iterdir())

def hang():
    marker.write_text("in flight")  # shards before this one are written: now kill me
    time.sleep(600)

rows = [{"key": p.name, "content_hash": p.name, "label": 0, "source": p} for p in blobs]
rows.insert(5, {"key": "hang", "content_hash": "hang", "label": 0, "source": hang})
write_tensors(rows, out, DecodeSettings(size=(12, 10)), shard_bytes=2 * 360, previous_index=out)
"""


def test_sigkill_mid_write_leaves_previous_index_valid(tmp_path):
    write_tensors(make(range(4)), tmp_path / "ds", SETTINGS)
    before = files(tmp_path / "ds")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for s in range(10, 18):
        (blobs / f"{s}.png").write_bytes(png(pixels(s)))
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "ds"),
                              str(marker), str(blobs)])
    try:
        for _ in range(600):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), "the writer never reached the hanging source"
    finally:
        child.kill()
        child.wait(timeout=30)
    leftovers = set(files(tmp_path / "ds")) - set(before)
    assert any(n.startswith("shard-") for n in leftovers)  # it did write shards before dying
    assert {n: files(tmp_path / "ds")[n] for n in before} == before
    ds = open_dataset(tmp_path / "ds")
    assert len(ds) == 4 and np.array_equal(ds[3][0], pixels(3))
    assert checks.shards_match(tmp_path / "ds")[0]
    summary = write_tensors(make(range(4)), tmp_path / "ds", SETTINGS,
                            previous_index=tmp_path / "ds")
    assert leftovers <= set(summary["removed"]) and summary["decoded"] == 0


def test_failure_at_commit_point_keeps_previous_index(tmp_path, monkeypatch):
    write_tensors(make(range(4)), tmp_path, SETTINGS)
    before = files(tmp_path)
    real = writer_module.atomic_write_bytes

    def refuse_index(path, data):
        if path.name == "index.json":
            raise OSError("disk gone at the commit")
        real(path, data)
    monkeypatch.setattr(writer_module, "atomic_write_bytes", refuse_index)
    with pytest.raises(OSError, match="commit"):
        write_tensors(make(range(8)), tmp_path, SETTINGS, previous_index=tmp_path)
    assert files(tmp_path) == before
    assert len(open_dataset(tmp_path)) == 4


def test_leftovers_of_a_killed_run_are_removed_by_the_next_one(tmp_path):
    write_tensors(make(range(3)), tmp_path, SETTINGS)
    (tmp_path / ".shard-dead-00000.npy.tmp").write_bytes(b"half")
    (tmp_path / "shard-dead-00001.npy").write_bytes(b"whole but never indexed")
    summary = write_tensors(make(range(3)), tmp_path, SETTINGS, previous_index=tmp_path)
    assert {".shard-dead-00000.npy.tmp", "shard-dead-00001.npy"} <= set(summary["removed"])
    assert not any("dead" in p.name for p in tmp_path.iterdir())


def test_incremental_decodes_only_new_images_and_keeps_full_shards(tmp_path):
    first = Counting()
    write_tensors(make(range(8)), tmp_path, SETTINGS, shard_bytes=4 * PER_SAMPLE, decode=first)
    assert first.calls == 8
    old = files(tmp_path)
    again = Counting()
    summary = write_tensors(make(range(11)), tmp_path, SETTINGS, shard_bytes=4 * PER_SAMPLE,
                            previous_index=tmp_path, decode=again)
    assert again.calls == 3 and summary["decoded"] == 3 and summary["reused"] == 8
    assert summary["copied"] == 0  # both old shards were full and wholly wanted: kept as is
    now = files(tmp_path)
    kept = [n for n in old if n.startswith("shard-")]
    assert all(now.get(n) == old[n] for n in kept)
    ds = open_dataset(tmp_path)
    assert len(ds) == 11
    assert all(np.array_equal(ds[i][0], pixels(i)) for i in range(11))

    # Dropping a sample: its shard's other members are copied from the old shard, not decoded.
    third = Counting()
    summary = write_tensors(make([s for s in range(11) if s != 1]), tmp_path, SETTINGS,
                            shard_bytes=4 * PER_SAMPLE, previous_index=tmp_path, decode=third)
    assert third.calls == 0 and summary["copied"] >= 3 and summary["samples"] == 10
    ds = open_dataset(tmp_path)
    assert [ds.info(i)["key"] for i in range(len(ds))] == \
        [f"img/{s}.png" for s in range(11) if s != 1]
    assert all(np.array_equal(ds[i][0], pixels(int(ds.info(i)["key"][4:-4])))
               for i in range(len(ds)))
    assert checks.shards_match(tmp_path)[0]
    assert set(files(tmp_path)) == {"index.json", load_index(tmp_path).header["samples"]["file"]} \
        | {s["file"] for s in load_index(tmp_path).shards}


def test_changed_settings_rebuild_everything(tmp_path):
    write_tensors(make(range(5)), tmp_path, SETTINGS)
    old_shards = {s["file"] for s in load_index(tmp_path).shards}
    count = Counting()
    other = DecodeSettings(size=(6, 5))
    summary = write_tensors(make(range(5)), tmp_path, other, previous_index=tmp_path,
                            decode=count)
    assert count.calls == 5 and summary["reused"] == 0
    assert summary["fingerprint"] == other.fingerprint() != SETTINGS.fingerprint()
    assert old_shards <= set(summary["removed"])
    assert open_dataset(tmp_path)[0][0].shape == (5, 6, 3)


def test_same_content_in_two_splits_is_reported(tmp_path):
    samples = make(range(4))
    samples.append(Sample("copy-of-1", None, "h1", 1, "test", png(pixels(1))))
    count = Counting()
    summary = write_tensors(samples, tmp_path, SETTINGS, decode=count)
    assert count.calls == 4  # the copy is stored once
    (dup,) = summary["cross_split_duplicates"]
    assert dup["content_hash"] == "h1" and dup["splits"] == ["test", "train"]
    passed, detail = checks.no_cross_split(tmp_path)
    assert not passed and detail["shared_contents"] == 1
    ds = open_dataset(tmp_path)
    assert np.array_equal(ds[4][0], ds[1][0]) and len(ds) == 5


def test_undecodable_sample_is_reported_not_indexed(tmp_path):
    samples = make(range(3)) + [Sample("bad", None, "hbad", 0, "train", b"not an image")]
    summary = write_tensors(samples, tmp_path, SETTINGS)
    assert [f["key"] for f in summary["failed"]] == ["bad"] and summary["samples"] == 3
    manifest = [{"key": s.key, "member": None, "valid": True} for s in samples]
    passed, detail = checks.manifest_in_index(manifest, tmp_path)
    assert not passed and detail["examples"]["missing"] == [("bad", None)]


@pytest.fixture
def dataset(tmp_path):
    write_tensors(make(range(23)), tmp_path, SETTINGS, shard_bytes=4 * PER_SAMPLE)
    return tmp_path


def test_shuffle_is_the_same_for_any_workers_and_ranks(dataset):
    ds = open_dataset(dataset)
    order = ds.order(epoch=3, seed=7)
    assert sorted(order) == list(range(23)) and not np.array_equal(order, np.arange(23))
    assert np.array_equal(order, open_dataset(dataset).order(3, 7))
    assert not np.array_equal(order, ds.order(4, 7))
    for workers in (1, 2, 4):
        parts = [ds.positions(3, 7, worker=w, num_workers=workers, block=3)
                 for w in range(workers)]
        flat = np.concatenate(parts)
        assert len(flat) == 23 and set(flat) == set(order)
        # round-robin over workers, one block at a time, is the global order again
        merged = [int(i) for j in range(8) for p in parts for i in p[3 * j:3 * j + 3]]
        assert merged == [int(i) for i in order]
    ranks = [[ds.positions(3, 7, rank=r, world_size=2, worker=w, num_workers=2)
              for w in range(2)] for r in range(2)]
    flat = np.concatenate([p for r in ranks for p in r])
    assert len(flat) == 23 and set(flat) == set(range(23))
    sizes = [sum(len(p) for p in r) for r in ranks]
    assert sizes == [12, 11]  # no padding: ranks differ by at most one sample
    even = [ds.positions(3, 7, rank=r, world_size=2, drop_remainder=True) for r in range(2)]
    assert [len(e) for e in even] == [11, 11]
    got = [label for _, label in ds.iter_epoch(3, 7, worker=1, num_workers=2)]
    assert got == [ds[int(i)][1] for i in order[1::2]]


def test_resume_mid_epoch_gives_exactly_the_remaining_samples(dataset):
    ds = open_dataset(dataset)
    ds.distribute(1, 2)
    ds.set_epoch(5, seed=11)
    expected = [int(i) for i in ds.positions(5, 11, rank=1, world_size=2)]
    assert len(expected) == 11

    def same(items, indices):  # every sample's pixels are unique, so equal pixels = same sample
        return len(items) == len(indices) and all(
            np.array_equal(img, ds[i][0]) and label == ds[i][1]
            for (img, label), i in zip(items, indices))
    it = iter(ds)
    first = [next(it) for _ in range(4)]
    assert same(first, expected[:4])
    state = pickle.loads(pickle.dumps(ds.state_dict()))
    assert state["position"] == 4 and state["epoch"] == 5 and state["rank"] == 1
    fresh = open_dataset(dataset)
    fresh.load_state_dict(state)
    assert same(list(fresh), expected[4:])
    fresh.set_epoch(6)
    assert len(list(fresh)) == 11  # the next epoch starts from its beginning
    with pytest.raises(ValueError):
        open_dataset(dataset, split="val").load_state_dict(state)


def test_dataset_pickles_for_dataloader_workers_and_never_imports_torch(dataset):
    ds = open_dataset(dataset)
    ds[0]  # opens a memory map, which must not travel
    copy = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(copy[3][0], ds[3][0]) and len(copy) == len(ds)
    out = subprocess.run([sys.executable, "-c", "import sys; from data_platform.tensors import "
                          "reader, writer, checks; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def upload(client, folder: Path, prefix: str) -> None:
    for p in folder.iterdir():
        client.put_object(Bucket="raw-bucket", Key=f"{prefix}/{p.name}", Body=p.read_bytes())


def test_reading_from_s3_through_a_verified_cache(s3, dataset, tmp_path):
    upload(s3, dataset, "tensors/photos")
    cache = tmp_path / "cache"
    ds = open_dataset("s3://raw-bucket/tensors/photos", cache_dir=cache)
    local = open_dataset(dataset)
    assert len(ds) == 23 and all(np.array_equal(ds[i][0], local[i][0]) for i in range(23))
    shas = {s["sha256"] for s in load_index(dataset).shards}
    cached = {p.stem for p in cache.iterdir() if p.suffix == ".npy"}
    assert cached == shas  # fetched on demand, named by content
    assert len(list(open_dataset("s3://raw-bucket/tensors/photos", split="val",
                                 cache_dir=cache).batches(4))) == 2
    # A shard replaced in the bucket no longer matches the index: refused, not cached.
    first = load_index(dataset).shards[0]["file"]
    tampered = np.load(dataset / first)
    tampered[0, 0, 0, 0] ^= 1
    buf = io.BytesIO()
    np.save(buf, tampered)
    s3.put_object(Bucket="raw-bucket", Key=f"tensors/photos/{first}", Body=buf.getvalue())
    fresh = open_dataset("s3://raw-bucket/tensors/photos", cache_dir=tmp_path / "cold")
    with pytest.raises(InvalidIndex, match="sha256"):
        fresh[0]
    assert not any(p.suffix == ".npy" for p in (tmp_path / "cold").iterdir())
    with pytest.raises(InvalidIndex):
        open_dataset("s3://raw-bucket/nothing-here", cache_dir=cache)


def test_checks_pass_on_a_written_dataset_and_fail_on_a_tampered_shard(dataset):
    manifest = [{"key": f"img/{s}.png", "member": None, "valid": True} for s in range(23)]
    manifest.append({"key": "broken.png", "member": None, "valid": False})
    assert checks.manifest_in_index(manifest, dataset)[0]
    assert checks.shards_match(dataset)[0]
    assert checks.stats_finite(dataset)[0]
    assert checks.no_cross_split(dataset)[0]

    passed, detail = checks.manifest_in_index(manifest[1:] + [{"key": "extra.png"}], dataset)
    assert not passed and detail["examples"]["missing"] == [("extra.png", None)]
    assert detail["examples"]["unexpected"] == [("img/0.png", None)]
    shard = dataset / load_index(dataset).shards[1]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # one pixel, shape still right
    shard.write_bytes(bytes(data))
    passed, detail = checks.shards_match(dataset)
    assert not passed and detail["problems"] == [{"file": shard.name, "problem": "sha256 differs"}]
    with pytest.raises(InvalidIndex, match="sha256"):
        open_dataset(dataset, verify=True)[4]  # sample 4 lives in the second shard
    assert open_dataset(dataset, verify=True)[0][0].shape == (10, 12, 3)
    shard.write_bytes(bytes(data[:-PER_SAMPLE]))  # truncated: a sample short
    passed, detail = checks.shards_match(dataset)
    assert not passed and "unreadable" in detail["problems"][0]["problem"]


def test_stats_check_fails_without_a_train_split(tmp_path):
    write_tensors(make(range(3), split=lambda s: "val"), tmp_path, SETTINGS)
    passed, detail = checks.stats_finite(tmp_path)
    assert not passed and detail["mean"] is None
