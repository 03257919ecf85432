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
    (7, 1024, 0.1), (7, 1, 0.1), (64, 1, 0.0), (64, 1024, 0.0), (1 << 20, 1, 0.0)])
def test_agrees_with_pythons_csv_reader_on_random_files_across_chunks(monkeypatch, chunk,
                                                                       sparse, blank_share):
    """Small chunks: records and quotes cross chunk boundaries; `sparse` picks the count
    between quotes (1) or the vectorized one (1024) for chunks with quotes."""
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
