"""The independent record counter behind the rows_reconcile audit."""

import csv
import gzip
import io
import random

import pytest
from data_platform.contracts import parse_contract
from data_platform.records import _count_lines, source_records


@pytest.mark.parametrize("data, want", [
    (b"h\n1\n2\n", 3), (b"h\n1\n\n2\n", 3), (b"h\r\n1\r\n\r\n2\r\n", 3), (b"h\n1\n2", 3),
    (b'h\n"a\nb",1\n2\n', 3), (b'h\n"a""\n""b",1\n\n2\n', 3), (b"\n\nh\n1\n", 2),
    (b"", 0), (b"\n\n", 0), (b'h\n"never closed\n1\n2\n', 2),
])
def test_counts_records_not_lines(data, want):
    assert _count_lines(io.BytesIO(data), quote=b'"', escape=None) == want


def test_escaped_quotes_do_not_open_a_field():
    data = b'h\n"a\\"\nb",1\n2\n'
    assert _count_lines(io.BytesIO(data), quote=b'"', escape=b"\\") == 3


@pytest.mark.parametrize("chunk, sparse, blank_share", [
    (7, 1024, 0.1), (7, 1, 0.1), (64, 1, 0.0), (64, 1024, 0.0), (1 << 20, 1, 0.0),
    (64, 16, 0.05), (200, 40, 0.0)])
def test_agrees_with_pythons_csv_reader_on_random_files_across_chunks(monkeypatch, chunk,
                                                                       sparse, blank_share):
    """Small chunks: records and quotes cross chunk boundaries; `sparse` picks the count
    between quotes (1) or the vectorized one (1024) for chunks with quotes, or switches
    between them from chunk to chunk (16, 40: the counter's dense mode comes and goes)."""
    import data_platform.records as records

    monkeypatch.setattr(records, "CHUNK", chunk)
    monkeypatch.setattr(records, "SPARSE", sparse)
    rng = random.Random(1)
    for _ in range(300):
        lines = []
        for i in range(rng.randint(0, 30)):
            kind = rng.random()
            lines.append("" if kind < blank_share else f'"x\ny{i}",1' if kind < 0.3
                         else '"a""b",1' if kind < 0.4 else f"{i},v")
        text = ("\n".join(lines) + rng.choice(["", "\n", "\r\n"])).encode()
        want = sum(1 for r in csv.reader(io.StringIO(text.decode(), newline="")) if r)
        assert records._count_lines(io.BytesIO(text), quote=b'"', escape=None) == want, text


def test_header_gzip_and_jsonl(tmp_path):
    csv_contract = parse_contract({"name": "t"})
    p = tmp_path / "a.csv.gz"
    p.write_bytes(gzip.compress(b"a,b\n1,2\n\n3,4\n"))
    assert source_records(p, csv_contract, "gzip") == 2
    jsonl = parse_contract({"name": "t", "format": {"type": "jsonl"}})
    j = tmp_path / "a.jsonl"
    j.write_bytes(b'{"a": 1}\n\n{"a": 2}\nnot json\n')
    assert source_records(j, jsonl, "none") == 3


def test_line_index_maps_offsets_like_a_full_pass(tmp_path, monkeypatch):
    """The counter's index (a mark every `step` bytes, fed in chunks that do not align with
    the marks) lets the reject mapper skip ahead and still give every offset's true line."""
    import data_platform.records as records
    from data_platform.cleaning.lines import LineMapper

    monkeypatch.setattr(records, "CHUNK", 1000)
    rng = random.Random(7)
    text = "".join(rng.choice(["a,b\n", "\n", '"x\ny",1\n', "long" * rng.randint(1, 90) + "\n"])
                   for _ in range(3000)).encode()
    path = tmp_path / "f.csv"
    path.write_bytes(text)
    contract = parse_contract({"name": "t"})
    monkeypatch.setattr(records, "INDEX_STEP", 333)
    counter = records.counter_for(contract)
    counter.index = records.LineIndex(step=333)
    with open(path, "rb") as f:
        while chunk := f.read(records.CHUNK):
            counter.update(chunk)
    index = counter.index
    assert list(index.marks) == [text[:i * 333].count(b"\n") for i in range(len(index.marks))]
    assert len(index.marks) == len(text) // 333 + 1
    offsets = sorted(rng.sample(range(len(text)), 200))
    want = [text[:o].count(b"\n") + 1 for o in offsets]
    for idx in (index, None):
        mapper = LineMapper(path, "none", idx)
        try:
            assert [mapper.line_of(o) for o in offsets] == want
        finally:
            mapper.close()


def test_scan_source_hashes_the_bytes_it_counts(tmp_path):
    import hashlib

    from data_platform.records import scan_source

    data = b"a,b\n" + b"1,2\n" * 1000
    p = tmp_path / "a.csv"
    p.write_bytes(data)
    h = hashlib.sha256()
    records, index = scan_source(p, parse_contract({"name": "t"}), "none", hasher=h)
    assert (records, h.hexdigest()) == (1000, hashlib.sha256(data).hexdigest())
    assert index is not None and index.newlines == 1001


def test_a_line_longer_than_many_chunks_is_one_record(monkeypatch):
    """A line spanning hundreds of chunks is carried whole (appended to, not copied again per
    chunk) and counted once; a quoted newline inside it starts no record."""
    import data_platform.records as records

    monkeypatch.setattr(records, "CHUNK", 4096)
    long_field = b"x" * (1 << 20)
    data = b'h\n1,"' + long_field + b"\n" + long_field + b'"\n2,b\n' + long_field
    assert records._count_lines(io.BytesIO(data), quote=b'"', escape=None) == 4
