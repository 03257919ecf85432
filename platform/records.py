"""Counting a raw file's records without the cleaning engine, for the `rows_reconcile` audit.

The count must come from a different mechanism than the parse it checks, so an engine that drops
rows silently is caught: CSV records are counted by a quote-aware scan of the raw bytes (blank
lines are not records; a quoted field may span lines; the header is not a record), JSON Lines
as non-blank lines, Parquet from the footer. A chunk without blank lines and with few quotes
(most of a typical file) is counted with vectorized counts of its newlines, less those inside
quoted fields; other chunks are classified line by line, vectorized (0.63-0.72 s of CPU for
the 1.1 GB bench CSV, in 1 MiB chunks).

The same pass leaves a `LineIndex` (the newlines before every 64 KiB of the file), so the
cleaning engine maps a rejected row's byte position to its physical line by reading at most
64 KiB, not the whole file again.
"""

from __future__ import annotations

import array
import gzip
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .contracts import Contract

# Chunks of 1 MiB stay in the core's cache through every pass over them (the mask, the index,
# the quotes): with 16 MiB chunks the count took 1.3-2.0 s of CPU on the 1.1 GB bench file
# instead of 0.63-0.72 s, and more still beside DuckDB's COPY, which shares the L3 cache.
CHUNK = 1 << 20
SPARSE = 1024  # a chunk with at most one quote byte in this many is counted between its quotes
# A mark every 64 KiB: mapping a reject to its line reads at most 64 KiB (with 1 MiB marks, the
# 93 rejects of the bench file took 0.09 s, after the COPY); 8 bytes per mark in an array.
INDEX_STEP = 1 << 16


def source_records(path: Path, contract: Contract, compression: str | None = None) -> int:
    """Return the number of records in the raw file at `path` (the header excluded).

    `compression` ("gzip" or "none") defaults to the contract's, with "auto" meaning gzip for a
    `.gz` name. Raises OSError (and gzip's errors) when the file cannot be read.
    """
    return scan_source(path, contract, compression)[0]


def scan_source(path: Path, contract: Contract, compression: str | None = None, *,
                hasher=None) -> tuple[int, LineIndex | None]:
    """Return (records, line index) of the raw file at `path`, in one read of it.

    `hasher` (a hashlib object), when given, is fed the file's bytes as read; the index is None
    for Parquet and compressed files (offsets in a compressed stream cannot be seeked to).
    Raises like `source_records`.
    """
    counter = counter_for(contract)
    if counter is None:
        if hasher is not None:
            feed_hasher(path, hasher)
        return pq.ParquetFile(path).metadata.num_rows, None
    if compression is None:
        compression = contract.format.compression
        if compression == "auto":
            compression = "gzip" if path.name.lower().endswith(".gz") else "none"
    if compression == "gzip":
        counter.index = None
        if hasher is not None:
            feed_hasher(path, hasher)
        with gzip.open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                counter.update(chunk)
    else:
        for chunk in _chunks(path):
            if hasher is not None:
                hasher.update(chunk)
            counter.update(chunk)
    return records_from_counter(counter, contract), counter.index


def _chunks(path: Path):
    """The file's bytes in CHUNK pieces, read into one buffer again and again (a fresh object
    per read page-faults and leaves the cache): each piece is valid until the next."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            yield buf if n == CHUNK else bytes(view[:n])


def feed_hasher(path: Path, hasher) -> None:
    """Feed `hasher` the whole file at `path`, read in CHUNK pieces."""
    for chunk in _chunks(path):
        hasher.update(chunk)


class LineIndex:
    """The number of newline bytes before every `step`-th byte of a file (`marks[i]` counts
    those in bytes [0, i * step)): a byte offset's physical line is found by counting the
    newlines of at most `step` bytes from the mark before it."""

    def __init__(self, step: int = INDEX_STEP):
        self.step, self.marks = step, array.array("q", [0])
        self.offset = self.newlines = 0

    def add(self, chunk: bytes, nl: np.ndarray) -> int:
        """Record the chunk that follows what was added (its newline mask `nl`); return its
        newline count."""
        n, pos, total = len(chunk), 0, 0
        nxt = len(self.marks) * self.step - self.offset  # the next mark, relative to chunk
        while nxt <= n:
            total += int(np.count_nonzero(nl[pos:nxt]))
            self.marks.append(self.newlines + total)
            pos, nxt = nxt, nxt + self.step
        total += int(np.count_nonzero(nl[pos:n]))
        self.offset += n
        self.newlines += total
        return total

    def seek_point(self, offset: int) -> tuple[int, int]:
        """(byte offset, newlines before it) of the last mark at or before `offset`."""
        i = min(offset // self.step, len(self.marks) - 1)
        return i * self.step, self.marks[i]


class RecordCounter:
    """Counts records of bytes fed in order (`update`), like a hashlib object; `result()`.

    A record is counted at the line it starts on: a line that starts outside quotes and is not
    blank. A chunk without blank lines and without quote bytes is counted from its newline
    mask; with few quotes (found by memchr, one `find` per quote), by `bytes.count` between
    them (newlines inside quoted fields start no record). Other chunks are classified at once
    with numpy (newline and quote positions, quote parity before each newline); after such a
    chunk the next one's quotes are counted with numpy first. An escape character other than
    the quote falls back to a line-by-line walk of the chunks that hold quotes.
    """

    def __init__(self, *, quote: bytes | None, escape: bytes | None):
        self.quote, self.escape = quote, escape
        self.q = quote[0] if quote else None
        # `carry` is the line begun and not yet ended (a bytearray: a line spanning many
        # chunks grows by appending, not by copying all of it again per chunk).
        self.records, self.in_quote, self.carry = 0, False, bytearray()
        self.index: LineIndex | None = LineIndex()
        self._mask = np.empty(0, bool)
        self._nl = np.empty(0, bool)
        self._dense = False  # whether the last chunk had more quotes than a sparse one

    def update(self, chunk: bytes | bytearray) -> None:
        """Count the next bytes (a bytearray may be reused by the caller after the call)."""
        n = len(chunk)
        if len(self._nl) < n:  # reused buffers: a fresh 16 MB array per chunk page-faults
            self._nl, self._mask = np.empty(n, bool), np.empty(n, bool)
        nl = np.equal(np.frombuffer(chunk, np.uint8), 10, out=self._nl[:n])
        newlines = self.index.add(chunk, nl) if self.index is not None \
            else int(np.count_nonzero(nl))
        if not newlines:
            self.carry += chunk
            return
        if self.carry:  # the line begun in the previous chunk, completed
            first = chunk.find(b"\n")
            self.carry += chunk[:first + 1]
            line = bytes(self.carry)
            self._lines(line, 0, len(line), None, 1)
            begin = first + 1
        else:
            begin = 0
        cut = chunk.rfind(b"\n") + 1
        if cut > begin:  # the whole lines: every newline of the chunk from `begin` on
            self._lines(chunk, begin, cut, nl, newlines - (begin > 0))
        self.carry = bytearray(chunk[cut:])

    def _lines(self, data: bytes, begin: int, end: int, nl: np.ndarray | None,
               lines: int) -> None:
        """Count the `lines` whole lines `data[begin:end]`, viewed in place (no copy); `nl` is
        the newline mask of `data` (None: computed here)."""
        n = end - begin
        a = np.frombuffer(data, np.uint8, count=n, offset=begin)
        if nl is None:
            nl = np.equal(np.frombuffer(data, np.uint8), 10)
        if len(self._mask) < n:
            self._mask = np.empty(n, bool)
        mask = self._mask[:n]
        if self._dense:  # the last chunk had many quotes: count them at once first
            n_quotes = int(np.count_nonzero(np.equal(a, self.q, out=mask)))
            quotes_at = self._quote_positions(data, begin, end, n_quotes) \
                if n_quotes * SPARSE <= n else None
        else:  # memchr from quote to quote, giving up past the sparse limit
            quotes_at = self._quote_positions(data, begin, end, n // SPARSE)
            n_quotes = len(quotes_at) if quotes_at is not None else n
        self._dense = quotes_at is None
        if n_quotes and self.escape is not None:
            found, self.in_quote = _walk(data[begin:end], self.quote, self.escape, self.in_quote)
            self.records += found
            return
        if not n_quotes and self.in_quote:
            return  # every line continues the open quoted field
        if quotes_at is not None and not _has_blank_line(data, begin, end, nl, mask):
            self.records += self._sparse_quotes(data, begin, end, quotes_at, lines) \
                if n_quotes else lines
            return
        quotes = np.flatnonzero(a == self.q) if n_quotes else _NONE
        nl = np.flatnonzero(nl[begin:end])
        starts = np.empty_like(nl)
        starts[0], starts[1:] = 0, nl[:-1] + 1
        length = nl - starts
        blank = (length == 0) | ((length == 1) & (a[np.minimum(starts, len(a) - 1)] == 13))
        if not len(quotes):
            start_outside = np.full(len(nl), not self.in_quote)
        else:
            open_after = ((np.searchsorted(quotes, nl) + self.in_quote) & 1).astype(bool)
            start_outside = np.empty(len(nl), bool)
            start_outside[0], start_outside[1:] = not self.in_quote, ~open_after[:-1]
            self.in_quote = bool(open_after[-1])
        self.records += int(np.count_nonzero(start_outside & ~blank))

    def _quote_positions(self, data: bytes, begin: int, end: int,
                         limit: int) -> list[int] | None:
        """Positions of the quote bytes in data[begin:end] ([] without a quote character),
        found by memchr; None as soon as there are more than `limit` (a dense chunk)."""
        if self.q is None:
            return []
        found, pos, find = [], begin - 1, data.find
        while (pos := find(self.quote, pos + 1, end)) >= 0:
            if len(found) == limit:
                return None
            found.append(pos)
        return found

    def _sparse_quotes(self, data: bytes, begin: int, end: int, quotes_at: list[int],
                       lines: int) -> int:
        """Records of whole lines without a blank one and with few quotes (at `quotes_at`):
        every line, less the lines that start inside a quoted field (after a newline between
        two quotes)."""
        inside = 0
        start = begin if self.in_quote else None  # where the open quoted field began
        for pos in quotes_at:
            if start is None:
                start = pos
            else:
                inside += data.count(b"\n", start, pos)
                start = None
        ends_inside = start is not None
        if ends_inside:
            inside += data.count(b"\n", start, end)
        # Line 0 starts inside when a field was open; the last newline starts the next chunk's
        # first line, so it is no line of this one starting inside.
        records = lines - self.in_quote - inside + ends_inside
        self.in_quote = ends_inside
        return records

    def result(self) -> int:
        tail = 1 if self.carry.strip(b"\r") and not self.in_quote else 0  # no final newline
        return self.records + tail


_NONE = np.empty(0, np.int64)


def _has_blank_line(data: bytes, begin: int, end: int, nl: np.ndarray, out: np.ndarray
                    ) -> bool:
    """Whether the whole lines `data[begin:end]` (newline mask `nl` of `data`) hold an empty or
    a lone-CR line; `out` is a scratch mask of at least `end - begin` entries."""
    if nl[begin] or data[begin:begin + 2] == b"\r\n":
        return True
    pairs = np.logical_and(nl[begin:end - 1], nl[begin + 1:end], out=out[:end - begin - 1])
    if pairs.any():  # "\n\n"
        return True
    return data.find(b"\r", begin, end) >= 0 and data.find(b"\n\r\n", begin, end) >= 0


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
