"""Reading a job attempt's `output.log` as CloudWatch-style log events, by byte offset, without loading it whole.

Events. An event is one line of the file without its newline (a trailing "\\r" is dropped too). CloudWatch caps
an event at 256 KiB, so a line longer than `SPLIT_BYTES` (128 KiB) is cut: from a line start `s`, at the first
multiple of SPLIT_BYTES that is at least `s + SPLIT_BYTES`, then at every further multiple; pieces are thus
shorter than 2 * SPLIT_BYTES = 256 KiB and lines up to 128 KiB are never cut. Tying the cuts to file offsets
makes every event boundary decidable from the 2 * SPLIT_BYTES bytes around it (no scan back to the start of a
huge line), so reading forward, backward or from a time bound always yields the same events. While the attempt
runs, a last line without its newline is held back (it may still grow); once the attempt has ended it is shown.

Timestamps. The job writes its output straight to the file, so nothing stamps lines as they are written.
batchd stamps bytes when it first sees them: a sidecar `output.idx` next to the log gets a line
`<end offset> <ms>` whenever a read finds the file longer than before, with the file's mtime (made monotonic).
An event's timestamp (and ingestionTime) is the stamp of the bytes its first byte belongs to: the time batchd
first saw it, accurate to the frequency of reads (all output a finished job wrote before anyone looked gets
the file's last modification time).
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SPLIT_BYTES = 128 * 1024
_BLOCK = 1 << 20  # read granularity for forward reads and the largest backward window
_FIRST_WINDOW = 16 * 1024
_INDEX_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Event:
    start: int  # offset of the event's first byte
    end: int  # offset just past its content (its newline, if any, is not part of it)
    next: int  # offset of the next event
    timestamp: int
    message: str


class _Index:
    """The parsed sidecar: chunk i covers bytes [ends[i-1], ends[i]) first seen at stamps[i] (ms)."""

    __slots__ = ("ends", "stamps", "read_upto", "inode")

    def __init__(self) -> None:
        self.ends: list[int] = []
        self.stamps: list[int] = []
        self.read_upto = 0  # bytes of the sidecar already parsed
        self.inode = -1

    def add(self, end: int, stamp: int) -> None:
        if self.ends and end <= self.ends[-1]:
            return  # duplicate or out-of-order line: keep the first word on each byte
        if self.stamps and stamp < self.stamps[-1]:
            stamp = self.stamps[-1]
        self.ends.append(end)
        self.stamps.append(stamp)


_cache: OrderedDict[str, _Index] = OrderedDict()


def _load_index(idx_path: Path) -> _Index:
    key = str(idx_path)
    index = _cache.get(key)
    try:
        st = idx_path.stat()
    except FileNotFoundError:
        st = None
    if index is None or st is None or st.st_ino != index.inode or st.st_size < index.read_upto:
        index = _Index()
    if st is not None and st.st_size > index.read_upto:
        with open(idx_path, "rb") as f:
            f.seek(index.read_upto)
            data = f.read(st.st_size - index.read_upto)
        complete = data.rfind(b"\n") + 1  # a line being appended by someone else: take it next time
        for line in data[:complete].splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                index.add(int(parts[0]), int(parts[1]))
        index.read_upto += complete
        index.inode = st.st_ino
    _cache[key] = index
    _cache.move_to_end(key)
    while len(_cache) > _INDEX_CACHE_SIZE:
        _cache.popitem(last=False)
    return index


class LogFile:
    """One output.log, opened for one request. Use as a context manager."""

    def __init__(self, path: Path, ended: bool, max_event: int = SPLIT_BYTES) -> None:
        self.path = Path(path)
        self.ended = ended
        self.max_event = max_event
        self.size = 0
        self.visible_end = 0
        self.index = _Index()
        self._f: BinaryIO | None = None

    def __enter__(self) -> LogFile:
        try:
            self._f = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        except FileNotFoundError:
            return self  # not started yet: no events
        st = os.fstat(self._f.fileno())
        self.size = st.st_size
        self.index = self._stamp(self.size, st.st_mtime_ns // 1_000_000)
        self.visible_end = self.size if self.ended else self._complete_end()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()

    # -- timestamps --------------------------------------------------------------------------------------

    def _stamp(self, size: int, mtime_ms: int) -> _Index:
        idx_path = self.path.with_name("output.idx")
        index = _load_index(idx_path)
        seen = index.ends[-1] if index.ends else 0
        if size > seen:
            stamp = max(mtime_ms, index.stamps[-1] if index.stamps else 0)
            line = f"{size} {stamp}\n".encode()
            try:
                # O_APPEND: one short write, so concurrent appenders never interleave inside a line.
                fd = os.open(idx_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError:
                pass  # read-only attempt dir: the stamp lives in memory only
            index = _load_index(idx_path)
            if not index.ends or index.ends[-1] < size:
                index.add(size, stamp)
        return index

    def stamp_at(self, offset: int) -> int:
        """The timestamp of the byte at `offset`."""
        i = bisect.bisect_right(self.index.ends, offset)
        if i >= len(self.index.stamps):
            return self.index.stamps[-1] if self.index.stamps else 0
        return self.index.stamps[i]

    @property
    def first_stamp(self) -> int | None:
        return self.index.stamps[0] if self.index.stamps and self.size else None

    @property
    def last_stamp(self) -> int | None:
        return self.index.stamps[-1] if self.index.stamps and self.size else None

    def offset_for_time(self, ms: int) -> int:
        """The first event boundary whose event is stamped at `ms` or later (visible_end if none)."""
        i = bisect.bisect_left(self.index.stamps, ms)
        if i >= len(self.index.stamps):
            return self.visible_end
        chunk_start = self.index.ends[i - 1] if i > 0 else 0
        return self.next_boundary(chunk_start)

    # -- boundaries ----------------------------------------------------------------------------------

    def _read(self, start: int, end: int) -> bytes:
        if self._f is None or end <= start:
            return b""
        self._f.seek(start)
        return self._f.read(end - start)

    def _split_after(self, pos: int) -> int:
        """Where the event starting at the boundary `pos` is cut if its line goes on that far."""
        m = self.max_event
        return -(-(pos + m) // m) * m

    def _complete_end(self) -> int:
        """Where the complete events end while the attempt runs: a trailing partial line is held back."""
        if self.size == 0:
            return 0
        m = self.max_event
        low = max(0, self.size - 2 * m - 2)
        n = self._read(low, self.size).rfind(b"\n")
        last_cut = ((self.size - 1) // m) * m  # a cut needs the byte at it, hence < size
        if n < 0 and low > 0:
            return last_cut  # the last line started more than 2 * m ago: it is cut at every multiple
        line_start = low + n + 1 if n >= 0 else 0
        return last_cut if last_cut >= line_start + m else line_start

    def _is_boundary(self, p: int, win: bytes, low: int) -> bool:
        if p == 0 or win[p - 1 - low : p - low] == b"\n":
            return True
        m = self.max_event
        return p % m == 0 and p < self.size and b"\n" not in win[p - m - low : p + 1 - low]

    def next_boundary(self, pos: int) -> int:
        """The first event start at or after `pos` (visible_end if there is none)."""
        if pos <= 0:
            return 0
        if pos >= self.visible_end:
            return self.visible_end
        m = self.max_event
        # Fast path: pos is no cut (not a multiple of m) and a newline follows before the next multiple.
        if pos % m:
            near = self._read(pos - 1, min(self.size, pos + 4096))
            if near[:1] == b"\n":
                return pos
            n = near.find(b"\n", 1)
            if n >= 0 and pos + n <= (pos // m + 1) * m:
                return min(pos + n, self.visible_end)
        low = max(0, pos - m - 1)
        win = self._read(low, min(self.size, pos + 2 * m + 2))
        if self._is_boundary(pos, win, low):
            return pos
        n = win.find(b"\n", pos - low)
        line_next = low + n + 1 if n >= 0 else self.visible_end
        cut = (pos // m + 1) * m
        while cut < line_next:  # at most two multiples lie between pos and the next line start
            if self._is_boundary(cut, win, low):
                return min(cut, self.visible_end)
            cut += m
        return min(line_next, self.visible_end)

    # -- events ------------------------------------------------------------------------------------------

    def forward(self, pos: int, stop: int) -> Iterator[Event]:
        """Events from the boundary `pos` up to the boundary `stop` (<= visible_end), in order."""
        stop = min(stop, self.visible_end)
        buf, base = b"", pos
        while pos < stop:
            cut = self._split_after(pos)
            need = min(cut + 1, self.size)
            if pos < base or need > base + len(buf):
                base = pos
                buf = self._read(pos, min(max(need, pos + _BLOCK), self.size))
            n = buf.find(b"\n", pos - base, need - base)
            if n >= 0:
                end, nxt = base + n, base + n + 1
            elif cut < self.size and cut <= stop:
                end = nxt = cut
            else:  # the (ended) last line without a newline
                end = nxt = stop
            raw = buf[pos - base : end - base]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            yield Event(pos, end, nxt, self.stamp_at(pos), raw.decode("utf-8", "replace"))
            pos = nxt

    def backward(self, pos: int, low: int) -> Iterator[list[Event]]:
        """Events between the boundaries `low` and `pos`, in windows from the end: each window in order."""
        end = pos
        size = _FIRST_WINDOW  # small first: a tail of a few lines should not parse a megabyte
        while end > low:
            start = max(low, end - size)
            first = self.next_boundary(start) if start > low else low
            if first >= end:  # the window holds no event start: widen it
                size *= 2
                continue
            yield list(self.forward(first, end))
            end = first
            size = min(size * 2, _BLOCK)


def remove_cached_index(path: Path) -> None:
    """Forget the cached sidecar of an output file (e.g. when an attempt directory is deleted)."""
    with contextlib.suppress(KeyError):
        del _cache[str(Path(path).with_name("output.idx"))]
