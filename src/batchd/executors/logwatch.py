"""Stamping output as it is written: ONE background thread watches running attempts' output files with inotify.

The job writes its stdout and stderr straight to files (so it never blocks on, nor dies with, a server that is
gone). On each write the kernel queues an IN_MODIFY event; this thread wakes, reads the file's size and mtime
(lstat: never opening, so a FIFO or symlink put in a file's place cannot block it) and appends `<size> <mtime
ms>` to the file's sidecar (`store.logfiles.append_stamp`). The stamp is the kernel's time of the last write,
so it stays exact to the millisecond however late the thread runs; writes that arrive together share one stamp.

Nothing here runs on the event loop: watch() and unwatch() queue a command and poke a pipe. Where inotify is
missing or its watch limit is reached, files are simply not watched and reads stamp new bytes when they first
see them (`store.logfiles.LogFile._stamp`), as for lines written while no server runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import stat
import struct
import threading
from collections import deque
from pathlib import Path

from batchd.store.logfiles import append_stamp

log = logging.getLogger("batchd.executor.logwatch")

_IN_MODIFY = 0x00000002
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_DONT_FOLLOW = 0x02000000
_IN_CLOEXEC = 0o2000000
_IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of name, none for file watches)

OutputFile = tuple[Path, Path]  # (output file, its sidecar)


class _Watched:
    __slots__ = ("path", "index", "end")

    def __init__(self, path: Path, index: Path) -> None:
        self.path, self.index, self.end = path, index, 0


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch  # noqa: B018 - present?
    except (OSError, AttributeError):
        return None
    return libc


class OutputWatcher:
    """Keeps the sidecars of watched output files up to date. Thread-safe; the thread starts on first use."""

    def __init__(self) -> None:
        self._commands: deque[tuple[str, list[OutputFile]]] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._libc = _libc()
        self._fd = -1
        self._wake_r = self._wake_w = -1
        self._by_wd: dict[int, _Watched] = {}
        self._by_path: dict[Path, int] = {}
        self._stopping = False
        self._warned = False
        self._flushes: deque[threading.Event] = deque()
        self._poked = False

    def watch(self, files: list[OutputFile]) -> None:
        """Start stamping these files, and stamp what they hold already (also what a job wrote before this
        thread got to the command: the watch is added on the thread, the job may be quicker)."""
        self._send("watch", files)

    def unwatch(self, files: list[OutputFile]) -> None:
        """Stop watching these files.

        Bytes written since their last stamp need none from here: the first read stamps them with the file's
        mtime, the very stamp this thread would give them now. Not urgent either: it waits for the thread's
        next wake-up instead of causing one, which keeps the cost of a short job low."""
        self._send("unwatch", files, poke=False)

    def close(self) -> None:
        with self._lock:
            thread, self._stopping = self._thread, True
            if thread is not None:
                os.write(self._wake_w, b"x")
        if thread is not None:
            thread.join(timeout=5)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every command sent so far has been handled (tests and shutdown)."""
        done = threading.Event()
        with self._lock:
            if self._thread is None:
                return True
            self._commands.append(("flush", [(Path(), Path())]))
            self._flushes.append(done)
            os.write(self._wake_w, b"x")
        return done.wait(timeout)

    # -- the thread ------------------------------------------------------------------------------------

    def _send(self, kind: str, files: list[OutputFile], poke: bool = True) -> None:
        if self._libc is None or not files:
            return
        with self._lock:
            if self._stopping:
                return
            if self._thread is None and not self._start():
                return
            self._commands.append((kind, files))
            if len(self._commands) > 1024:
                poke = True  # bound the backlog of unwatches
            if poke and not self._poked:  # one wake-up for everything queued until the thread runs
                self._poked = True
                os.write(self._wake_w, b"x")

    def _start(self) -> bool:
        assert self._libc is not None
        fd = self._libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
        if fd < 0:
            log.warning("inotify unavailable (%s): output is stamped when first read", os.strerror(ctypes.get_errno()))
            self._libc = None
            return False
        self._fd = fd
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="batchd-logwatch", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll(1000)}  # at least once a second: queued unwatches
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            if self._fd in ready:
                self._on_events()
            if self._run_commands():  # also the unwatches queued without a wake-up
                return

    def _run_commands(self) -> bool:
        while True:
            with self._lock:
                self._poked = False
                if not self._commands:
                    if self._stopping:
                        os.close(self._fd)
                        return True
                    return False
                kind, files = self._commands.popleft()
                if kind == "flush":
                    self._flushes.popleft().set()
                    continue
            for path, index in files:
                try:
                    self._add(path, index) if kind == "watch" else self._remove(path)
                except Exception:  # never let one file stop the thread
                    log.exception("watching %s", path)

    def _add(self, path: Path, index: Path) -> None:
        if path in self._by_path:
            return
        assert self._libc is not None
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _IN_MODIFY | _IN_DONT_FOLLOW)
        if wd < 0:
            if not self._warned:  # e.g. ENOSPC: fs.inotify.max_user_watches reached
                self._warned = True
                log.warning("cannot watch %s (%s): its output is stamped when first read",
                            path, os.strerror(ctypes.get_errno()))
            return
        watched = _Watched(path, index)
        self._by_wd[wd], self._by_path[path] = watched, wd
        self._stamp(watched)  # what was written before the watch (while no server ran: its mtime)

    def _remove(self, path: Path) -> None:
        wd = self._by_path.pop(path, None)
        if wd is None:
            return
        del self._by_wd[wd]
        assert self._libc is not None
        self._libc.inotify_rm_watch(self._fd, wd)

    def _on_events(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        changed: dict[int, None] = {}
        overflow = False
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _, name_len = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size + name_len
            if mask & _IN_Q_OVERFLOW:
                overflow = True
            elif mask & _IN_IGNORED:  # the file was deleted (or the watch removed): forget it
                watched = self._by_wd.pop(wd, None)
                if watched is not None:
                    self._by_path.pop(watched.path, None)
            else:
                changed[wd] = None
        for wd in list(self._by_wd) if overflow else changed:
            watched = self._by_wd.get(wd)
            if watched is not None:
                self._stamp(watched)

    def _stamp(self, watched: _Watched) -> None:
        try:
            st = os.lstat(watched.path)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_size <= watched.end:
            return
        try:
            append_stamp(watched.index, st.st_size, st.st_mtime_ns // 1_000_000)
        except OSError as exc:
            log.warning("cannot stamp %s: %s", watched.path, exc)
            return
        watched.end = st.st_size
