"""What a bulk CSV import needs to stream a file of any size in flat memory: a line source
that counts how far it has read (for an ETA), a spool of validated rows between the two
passes, and a compact "seen before?" test for duplicate keys."""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

# Rows per transaction: short enough that a live call's write waits well under 1 s behind
# one, long enough that per-transaction costs (fsync, round trips) stay small.
BATCH_ROWS = 2000


class CountingLines:
    """Iterates a text file's lines for csv.reader and counts the characters read (tell()
    is disabled while a text file is iterated)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._stream:
            self.chars += len(line)
            yield line


class Spool:
    """Validated rows, written in batches to an anonymous temporary file by pass 1 and read
    back by pass 2, so neither pass holds the file in memory. Rows are tuples of str, int,
    None and bool (marshal: fast, and nothing but our own rows is ever loaded)."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="starpay-import-")
        self._batch: list[tuple[Any, ...]] = []
        self.rows = 0

    def add(self, row: tuple[Any, ...]) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            marshal.dump(self._batch, self._file)
            self._batch = []

    def batches(self) -> Iterator[list[tuple[Any, ...]]]:
        self._flush()
        self._file.seek(0)
        while True:
            try:
                batch = marshal.load(self._file)
            except EOFError:
                return
            yield batch

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SeenBefore:
    """A Bloom filter: ``maybe_seen(key)`` is False for a key never added, and True for a
    key added before (and, rarely, for one that was not). A million keys take 2 MB where a
    set of them takes ~90 MB; callers confirm the rare "maybe" exactly (see confirm)."""

    def __init__(self, expected: int) -> None:
        self._bits = max(1 << 20, 16 * expected)  # ~0.2 % false positives at `expected`
        self._array = bytearray(self._bits // 8 + 1)

    def maybe_seen_then_add(self, key: str) -> bool:
        h = hash(key)
        h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
        seen = True
        arr, m = self._array, self._bits
        for i in range(4):
            bit = (h1 + i * h2) % m
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not arr[byte] & mask:
                seen = False
                arr[byte] |= mask
        return seen


def first_lines(keys: set[str], rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The first line each of ``keys`` appears on, from (key, line) pairs in file order."""
    found: dict[str, int] = {}
    for key, line in rows:
        if key in keys and key not in found:
            found[key] = line
    return found


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class CheckReport:
    """Pass 1's outcome of an import: the good rows sit in ``spool`` (close it when done)."""
    spool: Spool
    good: int = 0
    bad: list[BadRow] = field(default_factory=list)
    skip_lines: set[int] = field(default_factory=set)  # spooled rows found bad later

    def close(self) -> None:
        self.spool.close()
