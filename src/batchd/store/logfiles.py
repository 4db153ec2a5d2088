"""Reading a job attempt's output as CloudWatch-style log events, by byte offset, without loading it whole.

Files. An attempt has two output files, `<attempt>.stdout.log` and `<attempt>.stderr.log`
(`domain.logstreams`), each with a timestamp sidecar (`.idx` instead of `.log`). All of them live in the
server's data dir, out of the job's working directory. A job can still reach them (same uid) and replace
them by a FIFO, a symlink or a device, so every open here is `O_NONBLOCK | O_NOFOLLOW` and anything but a
regular file is refused (read as empty, never waited on or followed). The Logs handlers call this module on a
small thread pool, never on the event loop; only `open_regular` and `read_small_file` (the local executor's
output opens and its `exit_code` reads, which never block) are also called on the loop.

Events. An event is one line of a file without its newline (a trailing "\\r" is dropped too). CloudWatch caps
an event at 256 KiB, so a line longer than `SPLIT_BYTES` (128 KiB) is cut: from a line start `s`, at the first
multiple of SPLIT_BYTES that is at least `s + SPLIT_BYTES`, then at every further multiple; pieces are thus
shorter than 2 * SPLIT_BYTES = 256 KiB and lines up to 128 KiB are never cut. Tying the cuts to file offsets
makes every event boundary decidable from the 2 * SPLIT_BYTES bytes around it (no scan back to the start of a
huge line), so reading forward, backward or from a time bound always yields the same events. While the attempt
runs, a last line without its newline is held back (it may still grow); once the attempt has ended it is shown.
An attempt's stream is both files merged by (timestamp, stdout before stderr, offset) (`AttemptLog`).

Timestamps. A sidecar holds lines `<end offset> <ms>`: bytes up to `end offset` had been written by `ms`. The
executor's watcher (`executors.logwatch`) appends one whenever the kernel reports a write (inotify), with the
file's mtime, so lines are stamped within milliseconds of being written while a server runs. Bytes no stamp
covers yet (written while no server ran) get the file's mtime when a read first finds them. Stamps are made
monotonic; an event's timestamp (and ingestionTime) is the stamp of the chunk its first byte belongs to.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import heapq
import logging
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SPLIT_BYTES = 128 * 1024
_BLOCK = 1 << 20  # read granularity for forward reads and the largest backward window
_FIRST_WINDOW = 16 * 1024
_INDEX_CACHE_SIZE = 1024
_MAX_INDEX_READ = 16 * 1_048_576  # a sidecar is parsed at most this much per read (it is batchd's own file)

log = logging.getLogger("batchd.logs")

Position = tuple[int, ...]  # one byte offset per file of an AttemptLog


@dataclass(frozen=True, slots=True)
class Event:
    start: int  # offset of the event's first byte
    end: int  # offset just past its content (its newline, if any, is not part of it)
    next: int  # offset of the next event
    timestamp: int
    message: str
    source: int = 0  # which file of the attempt: 0 stdout, 1 stderr


class NotRegularFile(OSError):
    """A path that should be one of batchd's output files is something else (FIFO, symlink, device...)."""


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int | None:
    """An fd of the regular file at `path`, opened without following a symlink or waiting on a FIFO.

    None when it does not exist; NotRegularFile when it is anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            raise NotRegularFile(exc.errno, f"{path} is not a regular file") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_file(path: Path, limit: int = 4096) -> bytes | None:
    """The first `limit` bytes of a regular file (None if missing or not a regular file)."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    if fd is None:
        return None
    try:
        return os.pread(fd, limit, 0)
    except OSError:
        return None
    finally:
        os.close(fd)


def append_stamp(idx_path: Path, end: int, stamp_ms: int) -> None:
    """Record that the bytes of the output file up to `end` had been written by `stamp_ms`."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd = open_regular(idx_path, flags)
    if fd is None:  # its directory is missing (e.g. an attempt from before the output root)
        os.makedirs(idx_path.parent, mode=0o700, exist_ok=True)
        fd = open_regular(idx_path, flags)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, f"{idx_path} cannot be created")
    try:
        # O_APPEND: one short write, so concurrent appenders never interleave inside a line.
        os.write(fd, f"{end} {stamp_ms}\n".encode())
    finally:
        os.close(fd)


class _Index:
    """The parsed sidecar: chunk i covers bytes [ends[i-1], ends[i]) written by stamps[i] (ms)."""

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
_cache_lock = threading.Lock()  # readers run on a thread pool


def _parse_into(index: _Index, fd: int, size: int) -> None:
    data = os.pread(fd, min(size - index.read_upto, _MAX_INDEX_READ), index.read_upto)
    complete = data.rfind(b"\n") + 1  # a line being appended by someone else: take it next time
    for line in data[:complete].splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and len(line) < 48:
            index.add(int(parts[0]), int(parts[1]))
    index.read_upto += complete


def _load_index(idx_path: Path) -> _Index:
    key = str(idx_path)
    with _cache_lock:
        index = _cache.get(key)
    try:
        fd = open_regular(idx_path)
    except OSError:
        fd = None  # replaced by something that is not a file: no stamps from it
    try:
        st = os.fstat(fd) if fd is not None else None
        if index is None or st is None or st.st_ino != index.inode or st.st_size < index.read_upto:
            index = _Index()
        if fd is not None and st is not None and st.st_size > index.read_upto:
            fresh = _Index()  # parse into a copy: another thread may be reading the cached one
            fresh.ends, fresh.stamps, fresh.read_upto = list(index.ends), list(index.stamps), index.read_upto
            _parse_into(fresh, fd, st.st_size)
            fresh.inode = st.st_ino
            index = fresh
    finally:
        if fd is not None:
            os.close(fd)
    with _cache_lock:
        _cache[key] = index
        _cache.move_to_end(key)
        while len(_cache) > _INDEX_CACHE_SIZE:
            _cache.popitem(last=False)
    return index


class LogFile:
    """One output file, opened for one request. Use as a context manager.

    A missing file reads as empty; so does one that is not a regular file (`refused` says so)."""

    def __init__(
        self, path: Path, ended: bool, max_event: int = SPLIT_BYTES, index_path: Path | None = None,
        source: int = 0,
    ) -> None:
        self.path = Path(path)
        self.index_path = Path(index_path) if index_path is not None else self.path.with_suffix(".idx")
        self.ended = ended
        self.max_event = max_event
        self.source = source
        self.size = 0
        self.mtime_ms = 0
        self.visible_end = 0
        self.refused = False
        self.index = _Index()
        self._fd = -1

    def __enter__(self) -> LogFile:
        try:
            fd = open_regular(self.path)
        except OSError as exc:
            self.refused = True
            log.warning("not reading %s: %s", self.path, exc.strerror or exc)
            return self
        if fd is None:
            return self  # not started yet: no events
        self._fd = fd
        st = os.fstat(fd)
        self.size = st.st_size
        self.mtime_ms = st.st_mtime_ns // 1_000_000
        self.index = self._stamp(self.size, self.mtime_ms)
        self.visible_end = self.size if self.ended else self._complete_end()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- timestamps --------------------------------------------------------------------------------------

    def _stamp(self, size: int, mtime_ms: int) -> _Index:
        """The sidecar, with the bytes no stamp covers yet (written while no watcher ran) stamped at mtime."""
        index = _load_index(self.index_path)
        seen = index.ends[-1] if index.ends else 0
        if size > seen:
            stamp = max(mtime_ms, index.stamps[-1] if index.stamps else 0)
            try:
                append_stamp(self.index_path, size, stamp)
                index = _load_index(self.index_path)
            except OSError:
                pass  # the sidecar cannot be written: the stamp lives in this read only
            if not index.ends or index.ends[-1] < size:
                patched = _Index()
                patched.ends, patched.stamps = [*index.ends, size], [*index.stamps, stamp]
                index = patched
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
        if self._fd < 0 or end <= start:
            return b""
        return os.pread(self._fd, end - start, start)

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
            yield Event(pos, end, nxt, self.stamp_at(pos), raw.decode("utf-8", "replace"), self.source)
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



def _key(e: Event) -> tuple[int, int, int]:
    return e.timestamp, e.source, e.start


class AttemptLog:
    """An attempt's stream: its stdout and stderr files merged by (timestamp, source, offset).

    Positions are one offset per file; every prefix of the merged order is such a pair, so tokens stay exact.
    """

    def __init__(self, files: list[LogFile]) -> None:
        self.files = files

    def __enter__(self) -> AttemptLog:
        for f in self.files:
            f.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self.files:
            f.__exit__()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def mtime_ms(self) -> int:
        return max((f.mtime_ms for f in self.files), default=0)

    @property
    def refused(self) -> bool:
        return any(f.refused for f in self.files)

    @property
    def first_stamp(self) -> int | None:
        return min((s for f in self.files if (s := f.first_stamp) is not None), default=None)

    @property
    def last_stamp(self) -> int | None:
        return max((s for f in self.files if (s := f.last_stamp) is not None), default=None)

    @property
    def visible_end(self) -> Position:
        return tuple(f.visible_end for f in self.files)

    def offsets_for_time(self, ms: int) -> Position:
        return tuple(f.offset_for_time(ms) for f in self.files)

    def clamp(self, pos: Position, low: Position, high: Position) -> Position:
        """`pos` moved into [low, high] and onto event boundaries, file by file."""
        return tuple(f.next_boundary(min(max(p, lo), hi)) for f, p, lo, hi in zip(self.files, pos, low, high,
                                                                                     strict=True))

    def forward(self, pos: Position, stop: Position) -> Iterator[Event]:
        """Events from `pos` up to `stop`, merged in stream order."""
        its = [f.forward(p, s) for f, p, s in zip(self.files, pos, stop, strict=True)]
        return heapq.merge(*its, key=_key)

    def backward(self, pos: Position, low: Position) -> Iterator[Event]:
        """Events between `low` and `pos`, newest first."""

        def newest_first(f: LogFile, p: int, lo: int) -> Iterator[Event]:
            for window in f.backward(p, lo):
                yield from reversed(window)

        its = [newest_first(f, p, lo) for f, p, lo in zip(self.files, pos, low, strict=True)]
        return heapq.merge(*its, key=_key, reverse=True)

    @staticmethod
    def after(pos: Position, events: list[Event]) -> Position:
        """The position just past `events` (read forward from `pos`)."""
        out = list(pos)
        for e in events:
            out[e.source] = e.next
        return tuple(out)

    @staticmethod
    def before(pos: Position, events: list[Event]) -> Position:
        """The position of the first of `events` in each file (read backward from `pos`)."""
        out = list(pos)
        for e in reversed(events):
            out[e.source] = e.start
        return tuple(out)


def remove_cached_index(idx_path: Path) -> None:
    """Forget the cached sidecar (e.g. when an attempt's output is deleted)."""
    with _cache_lock, contextlib.suppress(KeyError):
        del _cache[str(idx_path)]
