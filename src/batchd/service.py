"""The composition root: settings, the store, the executor and the scheduler of one server process."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from batchd.config import Settings
from batchd.store.db import Database, StoreError

log = logging.getLogger("batchd")


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.db: Database | None = None
        self.scheduler = None
        self.executor = None
        self._lock_file = None

    def open_store(self) -> None:
        """Open and migrate the store; raises StoreError with a clear message."""
        if self.db is None:
            self._lock_data_dir()
            self.db = Database(self.settings.db_url)
            self.db.migrate()

    def _lock_data_dir(self) -> None:
        """One server per data dir: two would both dispatch the same jobs from one SQLite file."""
        if self.settings.db or self._lock_file is not None:
            return  # with PostgreSQL, several servers share the work by design (docs/durability.md)
        from batchd.store.db import _prepare_dir

        _prepare_dir(self.data_dir)
        path = self.data_dir / "batchd.lock"
        handle = open(path, "a+")  # noqa: SIM115 - held for the life of the process
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
        self.executor = LocalExecutor(self.data_dir / "jobs")
        self.scheduler = Scheduler(self)
        finish_pending_creates(self)
        await self.scheduler.start()

    async def stop(self) -> None:
        # Running jobs keep running: the next start adopts them.
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.db is not None:
            self.db.close()
            self.db = None
