"""Counting a raw file's records without the cleaning engine, for the `rows_reconcile` audit.

The count must come from a different mechanism than the parse it checks, so an engine that drops
rows silently is caught: CSV records are counted by a quote-aware scan of the raw bytes (blank
lines are not records; a quoted field may span lines; the header is not a record), JSON Lines
as non-blank lines, Parquet from the footer. Chunks without any quote byte (most of a typical
file) are counted with `bytes.count`; only chunks that hold quotes are walked line by line.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .contracts import Contract

CHUNK = 16 << 20
SPARSE = 1024  # a chunk with at most one quote byte in this many is counted between its quotes


def source_records(path: Path, contract: Contract, compression: str | None = None) -> int:
    """Return the number of records in the raw file at `path` (the header excluded).

    `compression` ("gzip" or "none") defaults to the contract's, with "auto" meaning gzip for a
    `.gz` name. Raises OSError (and gzip's errors) when the file cannot be read.
    """
    counter = counter_for(contract)
    if counter is None:
        return pq.ParquetFile(path).metadata.num_rows
    if compression is None:
        compression = contract.format.compression
        if compression == "auto":
            compression = "gzip" if path.name.lower().endswith(".gz") else "none"
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rb") as f:
        while chunk := f.read(CHUNK):
            counter.update(chunk)
    return records_from_counter(counter, contract)


class RecordCounter:
    """Counts records of bytes fed in order (`update`), like a hashlib object; `result()`.

    A record is counted at the line it starts on: a line that starts outside quotes and is not
    blank. A chunk without blank lines and without quote bytes is counted with `bytes.count`;
    with few quotes, by `bytes.count` between them (newlines inside quoted fields start no
    record). Other chunks are classified at once with numpy (newline and quote positions, quote
    parity before each newline); an escape character other than the quote falls back to a
    line-by-line walk of the chunks that hold quotes.
    """

    def __init__(self, *, quote: bytes | None, escape: bytes | None):
        self.quote, self.escape = quote, escape
        self.q = quote[0] if quote else None
        self.records, self.in_quote, self.carry = 0, False, b""

    def update(self, chunk: bytes) -> None:
        data = self.carry + chunk if self.carry else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self.carry = bytes(data)
            return
        block, self.carry = data[:cut + 1], bytes(data[cut + 1:])
        blank_free = (b"\n\n" not in block and b"\n\r\n" not in block
                      and block[:1] != b"\n" and block[:2] != b"\r\n")
        quotes = block.count(self.quote) if self.quote is not None else 0
        if not quotes:
            if self.in_quote:
                return  # every line continues the open quoted field
            if blank_free:
                self.records += block.count(b"\n")  # one record per line
                return
        elif self.escape is not None:
            n, self.in_quote = _walk(block, self.quote, self.escape, self.in_quote)
            self.records += n
            return
        elif blank_free and quotes * SPARSE <= len(block):
            self.records += self._sparse_quotes(block, quotes)
            return
        a = np.frombuffer(block, np.uint8)
        nl = np.flatnonzero(a == 10)
        starts = np.empty_like(nl)
        starts[0], starts[1:] = 0, nl[:-1] + 1
        length = nl - starts
        blank = (length == 0) | ((length == 1) & (a[np.minimum(starts, len(a) - 1)] == 13))
        if self.q is None or self.quote not in block:
            start_outside = np.full(len(nl), not self.in_quote)
        else:
            quotes = np.flatnonzero(a == self.q)
            open_after = ((np.searchsorted(quotes, nl) + self.in_quote) & 1).astype(bool)
            start_outside = np.empty(len(nl), bool)
            start_outside[0], start_outside[1:] = not self.in_quote, ~open_after[:-1]
            self.in_quote = bool(open_after[-1])
        self.records += int(np.count_nonzero(start_outside & ~blank))

    def _sparse_quotes(self, block: bytes, quotes: int) -> int:
        """Records of a block without blank lines and with few quotes: every line, less the
        lines that start inside a quoted field (those after a newline between two quotes)."""
        inside, pos = 0, -1
        start = 0 if self.in_quote else None  # where the open quoted field began
        for _ in range(quotes):
            pos = block.find(self.quote, pos + 1)
            if start is None:
                start = pos
            else:
                inside += block.count(b"\n", start, pos)
                start = None
        ends_inside = start is not None
        if ends_inside:
            inside += block.count(b"\n", start)
        # Line 0 starts inside when a field was open; the block's last newline starts the next
        # block's first line, so it is not a line of this block starting inside.
        records = block.count(b"\n") - self.in_quote - inside + ends_inside
        self.in_quote = ends_inside
        return records

    def result(self) -> int:
        tail = 1 if self.carry.strip(b"\r") and not self.in_quote else 0  # no final newline
        return self.records + tail


def counter_for(contract: Contract) -> RecordCounter | None:
    """A counter for raw bytes of this contract's format (None for Parquet)."""
    fmt = contract.format
    if fmt.type == "parquet":
        return None
    if fmt.type == "jsonl":
        return RecordCounter(quote=None, escape=None)
    return RecordCounter(quote=fmt.quote.encode(fmt.encoding, "replace"),
                         escape=None if fmt.escape == fmt.quote
                         else fmt.escape.encode(fmt.encoding, "replace"))


def records_from_counter(counter: RecordCounter, contract: Contract) -> int:
    """The record count of a fed counter, the header excluded."""
    n = counter.result()
    return max(0, n - 1) if contract.format.type == "csv" and contract.format.header else n


def _count_lines(stream, *, quote: bytes | None, escape: bytes | None) -> int:
    """Records of a whole stream (see RecordCounter)."""
    counter = RecordCounter(quote=quote, escape=escape)
    while chunk := stream.read(CHUNK):
        counter.update(chunk)
    return counter.result()


def _walk(block: bytes, quote: bytes, escape: bytes, in_quote: bool) -> tuple[int, bool]:
    records = 0
    for line in block.split(b"\n")[:-1]:
        if not in_quote:
            if not line.strip(b"\r"):
                continue
            records += 1
        n = line.count(quote) - line.count(escape + quote)
        if n % 2:
            in_quote = not in_quote
    return records, in_quote
