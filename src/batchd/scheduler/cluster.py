"""Several servers on one PostgreSQL database: membership, the scheduler lease, and wake-ups between servers.

* Every server has a stable id (kept in its data dir) and heart-beats a row in `servers` every
  HEARTBEAT seconds, naming the compute environments it executes jobs for.
* Exactly one server holds the `scheduler` lease (renewed every HEARTBEAT seconds, valid for LEASE seconds);
  it alone moves SUBMITTED jobs, creates array children, dispatches and reconciles dead servers. When it dies
  another server takes the lease within LEASE + HEARTBEAT seconds.
* Servers wake each other with PostgreSQL NOTIFY on channel `batchd` (payload `jobs`, `claim:<id>`,
  `terminate:<id>`, `resources`); every server also re-checks at each heartbeat, because NOTIFY is lost while
  a listener reconnects.

With SQLite there is one server: it is always the leader, and notifications are plain in-process calls.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, make_url

from batchd.domain.jobs import now_ms
from batchd.store.schema import leases, servers

log = logging.getLogger("batchd.cluster")

HEARTBEAT = 2.0  # seconds between heartbeats / lease renewals
LEASE = 6.0  # seconds a lease stays valid without renewal
DEAD_AFTER = 10.0  # seconds without heartbeat after which a server's jobs are reconciled by the leader
CHANNEL = "batchd"


def stable_server_id(data_dir: Path) -> str:
    """`<hostname>-<random>`, created once per data dir so a restarted server keeps its id (and its jobs)."""
    path = Path(data_dir) / "server-id"
    try:
        existing = path.read_text().strip()
        if existing:
            return existing
    except OSError:
        pass
    server_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    path.write_text(server_id)
    return server_id


class Cluster:
    def __init__(self, service: Any, on_message: Callable[[str, str], None]) -> None:
        self.service = service
        self.db = service.db
        self.shared = not self.db.is_sqlite
        self.server_id = service.settings.server_id or stable_server_id(service.data_dir)
        self.serves = list(service.settings.compute_environments or ["*"])
        self.is_leader = not self.shared
        self._on_message = on_message
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle ---

    async def start(self) -> None:
        self._heartbeat()
        if self.shared:
            self._try_lease()
            self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="batchd-heartbeat"))
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="batchd-listen"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.shared and self.is_leader:
            try:  # hand the lease over at once instead of making the others wait for it to expire
                with self.db.tx() as c:
                    c.execute(delete(leases).where(leases.c.name == "scheduler", leases.c.holder == self.server_id))
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    # --- membership ---

    def _heartbeat(self) -> None:
        now = now_ms()
        with self.db.tx() as c:
            found = c.execute(update(servers).where(servers.c.id == self.server_id).values(
                heartbeat_at=now, compute_environments=self.serves)).rowcount
            if not found:
                c.execute(insert(servers).values(id=self.server_id, started_at=now, heartbeat_at=now,
                                                 compute_environments=self.serves))

    def _try_lease(self) -> bool:
        now = now_ms()
        expires = now + int(LEASE * 1000)
        with self.db.tx() as c:
            row = c.execute(select(leases).where(leases.c.name == "scheduler").with_for_update()).first()
            if row is None:
                c.execute(insert(leases).values(name="scheduler", holder=self.server_id, expires_at=expires))
                got = True
            elif row.holder == self.server_id or row.expires_at < now:
                c.execute(update(leases).where(leases.c.name == "scheduler").values(
                    holder=self.server_id, expires_at=expires))
                got = True
            else:
                got = False
        if got and not self.is_leader:
            log.info("server %s is now the scheduler", self.server_id)
            self.is_leader = True
            self._on_message("leader", self.server_id)
        elif not got and self.is_leader:
            log.warning("server %s lost the scheduler lease", self.server_id)
            self.is_leader = False
        return got

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                self._heartbeat()
                self._try_lease()
            except Exception:
                # Cannot reach the database: stop dispatching until we can prove we hold the lease again.
                log.exception("heartbeat failed")
                self.is_leader = False
            self._on_message("tick", "")

    def alive(self, conn: Connection) -> list[dict[str, Any]]:
        horizon = now_ms() - int(DEAD_AFTER * 1000)
        rows = conn.execute(select(servers).where(servers.c.heartbeat_at >= horizon).order_by(servers.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def dead_ids(self, conn: Connection) -> list[str]:
        horizon = now_ms() - int(DEAD_AFTER * 1000)
        return [r.id for r in conn.execute(select(servers.c.id).where(servers.c.heartbeat_at < horizon)).all()]

    @staticmethod
    def serves_ce(server: dict[str, Any], ce_name: str) -> bool:
        names = server.get("compute_environments") or ["*"]
        return "*" in names or ce_name in names

    # --- notifications ---

    def publish(self, conn: Connection, kind: str, target: str = "") -> None:
        """Tell the other servers (delivered when `conn`'s transaction commits)."""
        if self.shared:
            conn.exec_driver_sql("SELECT pg_notify(%(c)s, %(p)s)", {"c": CHANNEL, "p": f"{kind}:{target}"})

    def publish_now(self, kind: str, target: str = "") -> None:
        """Tell the other servers now, in a transaction of its own. Called after a request's commit, so it must
        never raise: a failure here would turn a committed write into a 500 (and a retried SubmitJob into a
        second job). A lost wake-up costs only latency: every server runs a pass on the heartbeat tick."""
        if not self.shared:
            return
        try:
            with self.db.tx() as c:
                self.publish(c, kind, target)
        except Exception as exc:  # noqa: BLE001 - see above; the tick covers the missed wake-up
            log.warning("could not wake the other servers (%s: %s); they catch up on the next tick", kind, exc)

    async def _listen_loop(self) -> None:
        import psycopg

        url = make_url(self.db.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
                    await aconn.execute(f"LISTEN {CHANNEL}")
                    self._on_message("tick", "")  # catch up on whatever was missed while not listening
                    async for note in aconn.notifies():
                        kind, _, target = note.payload.partition(":")
                        self._on_message(kind, target)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; the heartbeat tick covers the gap
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
