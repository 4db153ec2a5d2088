"""The composition root: settings, the store, the executor and the scheduler of one server process."""

from __future__ import annotations

import logging
from pathlib import Path

from batchd.config import Settings
from batchd.store.db import Database

log = logging.getLogger("batchd")


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.db: Database | None = None
        self.scheduler = None
        self.executor = None

    def open_store(self) -> None:
        """Open and migrate the store; raises StoreError with a clear message."""
        if self.db is None:
            self.db = Database(self.settings.db_url)
            self.db.migrate()

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
