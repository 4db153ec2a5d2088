"""The composition root: settings, the store, the executor and the scheduler of one server process.

Where things live (docs/executors.md, "Layout"): the data dir (mode 0700, its files 0600) holds the database,
the lock, the server id and `output/` (each attempt's stdout, stderr and timestamp sidecars); the jobs' working
directories are elsewhere, under the jobs root (`jobs_dir`, by default `<data_dir>-jobs` beside the data dir),
one directory per account, so no job starts inside the server's state.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from batchd.config import Settings
from batchd.store.db import Database, StoreError

# The data dir's own files: private to the server's user.
_PRIVATE_FILES = ("batchd.sqlite3", "batchd.sqlite3-wal", "batchd.sqlite3-shm", "batchd.lock", "server-id")

log = logging.getLogger("batchd")


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.output_root = self.data_dir / "output"
        self.jobs_root = _jobs_root(settings)
        self.db: Database | None = None
        self.scheduler = None
        self.executor = None
        self._lock_file = None

    def open_store(self) -> None:
        """Open and migrate the store; raises StoreError with a clear message."""
        if self.db is None:
            self._prepare_dirs()
            self._lock_data_dir()
            self.db = Database(self.settings.db_url)
            self.db.migrate()
            self._restrict_files()

    def _prepare_dirs(self) -> None:
        from batchd.store.db import _prepare_dir

        data, jobs = self.data_dir.resolve(), self.jobs_root.resolve()
        if jobs == data or data in jobs.parents or jobs in data.parents:
            raise StoreError(
                f"jobs_dir {self.jobs_root} must be outside the data dir {self.data_dir} (and not contain it): "
                "jobs must not start inside the server's state"
            )
        _prepare_dir(self.data_dir)
        _chmod(self.data_dir, 0o700)
        try:
            self.jobs_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"jobs_dir {self.jobs_root} cannot be created: {exc.strerror}") from exc
        # With run_as_user the jobs' user must pass through it to its own directory, never list it.
        _chmod(self.jobs_root, 0o711 if self.settings.run_as_user else 0o700)

    def _restrict_files(self) -> None:
        for name in _PRIVATE_FILES:
            path = self.data_dir / name
            if path.is_file() and not path.is_symlink():
                _chmod(path, 0o600)

    def _lock_data_dir(self) -> None:
        """One server per data dir: two would both dispatch the same jobs from one SQLite file."""
        if self.settings.db or self._lock_file is not None:
            return  # with PostgreSQL, several servers share the work by design (docs/durability.md)
        from batchd.store.db import _prepare_dir

        _prepare_dir(self.data_dir)
        path = self.data_dir / "batchd.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        handle = os.fdopen(fd, "a+")  # held for the life of the process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise StoreError(
                f"data dir {self.data_dir} is in use by another batchd process (pid {owner}); "
                "stop it or use another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    async def start(self) -> None:
        from batchd.executors.local import LocalExecutor
        from batchd.handlers.resources_common import finish_pending_creates
        from batchd.scheduler.scheduler import Scheduler

        self.open_store()
        self.executor = LocalExecutor(
            self.jobs_root, self.output_root, self.settings.run_as_user, legacy_root=self.data_dir
        )
        self.scheduler = Scheduler(self)
        finish_pending_creates(self)
        await self.scheduler.start()
        self._restrict_files()  # the server id, written by the scheduler's first start

    async def stop(self) -> None:
        # Running jobs keep running: the next start adopts them.
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.executor is not None:
            self.executor.output_watcher.close()
        if self.db is not None:
            self.db.close()
            self.db = None


def _jobs_root(settings: Settings) -> Path:
    if settings.jobs_dir:
        return Path(settings.jobs_dir)
    data = Path(settings.data_dir).absolute()
    return data.with_name(data.name + "-jobs")


def _chmod(path: Path, mode: int) -> None:
    try:
        if (os.lstat(path).st_mode & 0o7777) != mode:
            os.chmod(path, mode)
    except OSError as exc:
        log.warning("cannot restrict %s to mode %o: %s", path, mode, exc.strerror)
