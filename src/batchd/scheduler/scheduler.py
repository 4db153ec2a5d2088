"""The scheduler: moves jobs along, places RUNNABLE jobs on compute environments, runs attempts.

Event-driven: SubmitJob (`notify_jobs`), CancelJob/TerminateJob (`cancel`/`terminate`), a finished attempt
(`_wake_dispatch`), a changed queue/CE (`wake()`) and messages from other servers (scheduler/cluster.py) wake
the loop; it otherwise sleeps until the next timer (an attempt timeout, a job-state time limit). One pass:
  1. SUBMITTED -> PENDING (waits on dependencies) or RUNNABLE; array parents get their children;
  2. for each queue, highest priority first, RUNNABLE jobs in FIFO order: a cancelled job at the head fails,
     a job that fits a compute environment (tried in ascending order) is claimed (STARTING) and launched,
     and the first job that does not fit blocks its queue (it is the head the seed speaks of).
Attempts are supervised by one asyncio task each: start (held) -> RUNNING committed -> released -> wait ->
finished -> retry or done; the finished writes of one event-loop turn are settled together (settle.py).
A pass does only what its wake-up calls for: see docs/scheduling.md ("Three kinds of pass").
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
from collections import Counter
from typing import Any

from batchd.domain import jobs as J
from batchd.domain.logstreams import stream_name
from batchd.executors.base import AttemptExit, LaunchSpec
from batchd.scheduler import arrays, lifecycle, settle
from batchd.scheduler.capacity import Ledger, accepts_jobs, capacity_of
from batchd.scheduler.cluster import Cluster
from batchd.scheduler.settle import Ended, Started
from batchd.store import jobs as store
from batchd.store import resources

log = logging.getLogger("batchd.scheduler")

_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")
SUBMITTED_BATCH = 2000
RUNNABLE_PAGE = 64
ALL_QUEUES = "*"  # in a pass's targets: dispatch in every queue (but no SUBMITTED or array step)
CANCELLED_PER_PASS = 200  # cancelled heads failed per pass; the loop serves requests between passes


def _need(row: dict[str, Any]) -> tuple[float, int, int]:
    return (row["vcpus"], row["memory"], row["gpus"])


def _name_of(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class Scheduler:
    def __init__(self, service: Any) -> None:
        self.service = service
        self.settings = service.settings
        self.executor = service.executor
        self.ledger = Ledger()
        self.base_env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        self._wake = asyncio.Event()
        # What the next pass must look at: None = everything; a set = only dispatch, in these queues (ALL_QUEUES:
        # in every queue).
        self._targets: set[str] | None = None
        self._loop_task: asyncio.Task | None = None
        self._attempts: dict[str, asyncio.Task] = {}
        self._handles: dict[str, dict[str, Any]] = {}
        self._terminating: set[str] = set()
        self._timeouts: list[tuple[int, str, int]] = []  # (deadline ms, job id, attempt)
        self._terminate_after_release: set[str] = set()
        self._settling: list[Ended] = []  # attempt ends of this loop turn, written together
        self._next_limit_check: int | None = None
        self._blocked: set[str] = set()  # queues whose head waits for capacity (as of the last pass)
        self._stopped = False
        self._resources: tuple[list[dict[str, Any]], dict[str, dict[str, Any]]] | None = None
        self.cluster = Cluster(service, self._on_cluster_message)
        self.server_id = self.cluster.server_id
        self._last_dead_check = 0
        self._reconciled = False
        self._usage_stale = True
        self._alive: list[dict[str, Any]] = []

    @property
    def db(self) -> Any:
        return self.service.db

    # --- life of the scheduler ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.cluster.start()
        self._reconcile()
        self._loop_task = asyncio.create_task(self._run(), name="batchd-scheduler")

    async def stop(self) -> None:
        # Jobs keep running; their processes are adopted by the next start.
        self._stopped = True
        tasks = [t for t in (self._loop_task, *self._attempts.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._settle_pending()  # what ended during the shutdown is written before the store closes
        await self.cluster.stop()

    def wake(self) -> None:
        """Compute environments or queues changed (or may have): re-read them, then run a pass."""
        self._resources = None
        resources.invalidate_cache()
        self._wake_full()
        self.cluster.publish_now("resources")

    def _wake_full(self) -> None:
        """Run a full pass soon: every step, every queue."""
        self._targets = None
        self._wake.set()

    def _wake_dispatch(self) -> None:
        """Run a pass soon that places RUNNABLE jobs in every queue (capacity freed, jobs became RUNNABLE)."""
        if self._targets is not None:
            self._targets.add(ALL_QUEUES)
        self._wake.set()

    def notify_jobs(self, runnable_in: str | None = None) -> None:
        """Jobs were submitted: run a pass soon (on whichever server schedules). `runnable_in`: the only new
        work is RUNNABLE jobs in this queue, so the pass needs to look at that queue alone — nothing else
        changed since the last pass (any other change asks for a full one), so no other queue can move."""
        if runnable_in is not None and self._targets is not None:
            self._targets.add(runnable_in)
            self._wake.set()
        else:
            self._wake_full()
        if not self.cluster.is_leader:
            self.cluster.publish_now("jobs")

    def _on_cluster_message(self, kind: str, target: str) -> None:
        """A wake-up from another server (or the heartbeat tick, or our election as the scheduler)."""
        if kind in ("jobs", "tick", "leader"):
            self._usage_stale = True  # another server may have finished jobs (freed capacity) or died
        if kind in ("resources", "leader", "tick"):  # the tick: a lost "resources" wake-up costs ≤ one tick
            self._resources = None
            resources.invalidate_cache()
        if kind in ("claim", "terminate") and target != self.server_id:
            return
        if kind in ("claim", "tick", "leader"):
            self._pickup_claimed()
        if kind in ("terminate", "tick"):
            self._pickup_terminations()
        self._wake_full()

    def _queues_and_envs(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Job queues (dispatch order) and compute environments, cached until `wake()` says they changed."""
        if self._resources is None:
            conn = self.db.conn
            ces = {ce["computeEnvironmentArn"]: ce for ce in resources.all_resources(conn, "compute-environment")}
            queues = [q for q in resources.all_resources(conn, "job-queue")
                      if q.get("status") not in ("DELETING", "DELETED")]
            queues.sort(key=lambda q: (-int(q.get("priority", 0)), q["jobQueueArn"]))
            self._resources = (queues, ces)
        return self._resources

    async def _run(self) -> None:
        while not self._stopped:
            delay = self._next_timer_delay()
            if not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    self._targets = None  # a timer is due
            self._wake.clear()
            targets, self._targets = self._targets, set()
            try:
                more = self.run_pass(targets)
            except Exception:
                self._targets = None
                log.exception("scheduler pass failed; retrying shortly")
                await asyncio.sleep(0.2)
                continue
            if more:
                self._wake_full()
                await asyncio.sleep(0)  # let requests in between large batches

    def _next_timer_delay(self) -> float | None:
        now = J.now_ms()
        candidates = []
        if self._timeouts:
            candidates.append(self._timeouts[0][0])
        if self._next_limit_check is not None:
            candidates.append(self._next_limit_check)
        if not candidates:
            return None
        return max(0.0, (min(candidates) - now) / 1000)

    # --- one pass ---------------------------------------------------------------------------------------

    def run_pass(self, queues: set[str] | None = None) -> bool:
        """Do everything that can be done now; with `queues`, only place the RUNNABLE jobs of those queues (a
        SubmitJob of a job with nothing to wait for needs no more). True when work is left for an immediate
        next pass."""
        now = J.now_ms()
        self._fire_timeouts(now)
        if not self.cluster.is_leader:
            return False  # another server schedules; this one only runs the attempts it is given
        if self.cluster.shared:
            self._sync_shared_state(now)
        if queues is not None:
            if not queues:
                return False
            return self._dispatch(now, None if ALL_QUEUES in queues else queues)
        more = self._advance_submitted(now)
        more |= arrays.spawn_children(self.db, now)
        more |= self._dispatch(now)
        return more

    def _advance_submitted(self, now: int) -> bool:
        with self.db.tx() as conn:
            # Array parents are not among them: they leave SUBMITTED once their children exist (arrays.py).
            rows = store.submitted_jobs(conn, SUBMITTED_BATCH)
            for row in rows:
                if row["runtime"].get("dependencyFailed"):
                    lifecycle.fail(conn, row, J.REASON_DEPENDENCY, now)
                elif row["pending_deps"] > 0:
                    store.save(conn, row, {"status": J.PENDING}, now)
                else:
                    store.save(conn, row, {"status": J.RUNNABLE, "runnable_at": now}, now)
        return len(rows) == SUBMITTED_BATCH

    def _dispatch(self, now: int, only: set[str] | None = None) -> bool:
        """Place RUNNABLE jobs (of the `only` queues, or all). True when cancelled heads are left for an
        immediate next pass."""
        queues, ces = self._queues_and_envs()
        if only is not None:
            # A queue whose head could not be placed stays blocked until something other than new jobs at
            # its tail changes (capacity, the head itself, a timer), and each of those asks for a full pass.
            queues = [q for q in queues if q["jobQueueArn"] in only and q["jobQueueArn"] not in self._blocked]
        else:
            self._next_limit_check = None  # recomputed from every queue's head below
            self._blocked = set()
        if not queues:
            return False
        mem_per_vcpu, gpus = self.settings.memory_mib_per_vcpu, self.settings.gpus_per_compute_environment
        launches: list[tuple[dict[str, Any], str, str]] = []
        doomed: list[str] = []  # cancelled jobs that reached the head of their queue
        more = False
        with self.db.tx() as tx:
            for queue in queues:
                order = sorted(queue.get("computeEnvironmentOrder") or [], key=lambda o: o["order"])
                envs = [(ces[o["computeEnvironment"]], capacity_of(ces[o["computeEnvironment"]], mem_per_vcpu, gpus))
                        for o in order if o["computeEnvironment"] in ces]
                after = 0
                blocked = False
                page_size = 4  # usually the head is all we need; grow while jobs keep starting
                while not blocked:
                    page = store.runnable_heads(tx, queue["jobQueueArn"], after, page_size)
                    page_size = min(page_size * 4, RUNNABLE_PAGE)
                    if not page:
                        break
                    for head in page:
                        after = head["seq"]
                        if head["is_cancelled"]:
                            # The seed's rule: a cancelled RUNNABLE job fails when it reaches the head. They
                            # fail together below (a cancelled array brings thousands), a bounded number per pass.
                            if len(doomed) >= CANCELLED_PER_PASS:
                                more = blocked = True
                                break
                            doomed.append(head["id"])
                            continue
                        # Placement needs only the light row; the full row is read (locked) to claim it.
                        need = _need(head)
                        placed, owner = None, None
                        for ce, cap in envs:
                            if accepts_jobs(ce) and self.ledger.fits(ce["computeEnvironmentArn"], cap, need):
                                owner = self._owner_for(ce, head)
                                if owner is not None:
                                    placed = ce
                                    break
                        if placed is not None and owner is not None:
                            row = store.get_for_update(tx, head["id"])
                            if row is None or row["status"] != J.RUNNABLE or row["is_cancelled"]:
                                continue  # changed by another server since the page was read
                            self._claim(tx, row, placed, owner, now)
                            if owner == self.server_id:
                                launches.append((row, queue["jobQueueName"], placed["computeEnvironmentName"]))
                            continue
                        if self._apply_state_limits(tx, queue, head, now):
                            continue
                        self._blocked.add(queue["jobQueueArn"])
                        if not any(cap.holds(need) for _, cap in envs) and head["status_reason"] != J.REASON_NO_FIT:
                            row = store.get_for_update(tx, head["id"])  # saving rewrites its record: the full row
                            if row is not None and row["status"] == J.RUNNABLE and not row["is_cancelled"]:
                                store.save(tx, row, {"status_reason": J.REASON_NO_FIT}, now)  # same status: no event
                                head["status_reason"] = J.REASON_NO_FIT
                        blocked = True
                        break
            lifecycle.fail_cancelled(tx, doomed, now)
        for row, queue_name, ce_name in launches:
            self._attempts[row["id"]] = asyncio.create_task(self._supervise(row, queue_name, ce_name, None))
        return more

    def _apply_state_limits(self, conn: Any, queue: dict[str, Any], head: dict[str, Any], now: int) -> bool:
        """jobStateTimeLimitActions: act on the blocked head once it has been RUNNABLE long enough."""
        for action in queue.get("jobStateTimeLimitActions") or []:
            if action.get("state") != "RUNNABLE":
                continue
            due = (head["runnable_at"] or now) + int(action["maxTimeSeconds"]) * 1000
            if now >= due:
                row = store.get_for_update(conn, head["id"])  # failing it records an event: the full row
                if row is not None and row["status"] == J.RUNNABLE:
                    reason = f"Canceled by JobStateTimeLimit action due to reason: {action['reason']}"
                    lifecycle.fail(conn, row, reason, now, is_cancelled=True)
                return True
            self._next_limit_check = min(due, self._next_limit_check or due)
        return False

    def _claim(self, conn: Any, row: dict[str, Any], ce: dict[str, Any], owner: str, now: int) -> None:
        attempt = row["attempt"] + 1
        self.ledger.add(ce["computeEnvironmentArn"], _need(row))
        store.save(conn, row, {"status": J.STARTING, "attempt": attempt, "ce_arn": ce["computeEnvironmentArn"],
                               "owner": owner, "status_reason": None, "started_at": None, "stopped_at": None},
                   now)
        if owner != self.server_id:
            self.cluster.publish(conn, "claim", owner)

    def _owner_for(self, ce: dict[str, Any], row: dict[str, Any]) -> str | None:
        """The server that runs a job placed on `ce`: this one with SQLite; with several servers, one of the
        live servers that serve this compute environment (spread by job id)."""
        if not self.cluster.shared:
            return self.server_id
        candidates = [s["id"] for s in self._alive if self.cluster.serves_ce(s, ce["computeEnvironmentName"])]
        if not candidates:
            return None
        return candidates[hash(row["id"]) % len(candidates)]

    def _sync_shared_state(self, now: int) -> None:
        """With several servers: capacity in use comes from the database (others finish jobs too), and the
        jobs of servers that stopped heart-beating are settled."""
        conn = self.db.conn
        if self._usage_stale:
            # Between recounts the ledger can only over-count (others' finishes are not in it yet), which
            # delays a start but never over-commits; our own claims and finishes keep it exact otherwise.
            self._usage_stale = False
            self.ledger = Ledger()
            for ce_arn, need in store.usage_by_compute_environment(conn).items():
                self.ledger.add(ce_arn, need)
            self._alive = self.cluster.alive(conn)
        if now - self._last_dead_check < 2000:
            return
        self._last_dead_check = now
        dead = self.cluster.dead_ids(conn)
        if dead:
            for row in store.active_owned_by(conn, dead):
                if row["status"] == J.STARTING and not row["runtime"].get("handle"):
                    # Assigned but never started there: give it back to its queue, no attempt used.
                    with self.db.tx() as tx:
                        current = store.get_for_update(tx, row["id"])
                        if current and current["status"] == J.STARTING and not current["runtime"].get("handle"):
                            store.save(tx, current, {"status": J.RUNNABLE, "attempt": current["attempt"] - 1,
                                                     "owner": None, "ce_arn": None, "runnable_at": now}, now)
                    continue
                reason = f"Host EC2 (instance batchd-server {row['owner']}) terminated."
                log.warning("job %s ran on server %s, which stopped: failing the attempt", row["id"], row["owner"])
                self._finish_attempt(row["id"], row["attempt"], AttemptExit(None, reason), retry=False,
                                     ran_on=row["owner"])

    # --- attempts ---------------------------------------------------------------------------------------

    async def _supervise(self, row: dict[str, Any], queue_name: str, ce_name: str,
                         handle: dict[str, Any] | None) -> None:
        job_id, attempt = row["id"], row["attempt"]
        try:
            if handle is None:
                handle = await self._start_attempt(row, queue_name, ce_name)
                if handle is None:
                    return
            self._handles[job_id] = handle
            result = await self.executor.wait(handle)
            self._to_settle(Ended(job_id, attempt, result))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a job RUNNING because of our own fault
            log.exception("attempt %s/%s failed in batchd", job_id, attempt)
            self._finish_attempt(job_id, attempt, AttemptExit(None, f"batchd error: {exc}"[:255]))
        finally:
            self._attempts.pop(job_id, None)
            self._handles.pop(job_id, None)

    async def _start_attempt(self, row: dict[str, Any], queue_name: str, ce_name: str) -> dict[str, Any] | None:
        job_id, attempt = row["id"], row["attempt"]
        container = row["spec"]["container"]
        stream = stream_name(row["spec"]["jobDefinitionName"], job_id, attempt)
        command = container.get("command") or []
        if not command:
            self._finish_attempt(job_id, attempt, AttemptExit(
                None, "CannotStartContainerError: the job has no command (batchd runs commands, not images)"))
            return None
        spec = LaunchSpec(
            job_id=job_id, attempt=attempt, command=list(command), account=row["account"],
            environment=J.job_environment(self.base_env, row, queue_name, ce_name, attempt),
            log_stream=stream, vcpus=row["vcpus"], memory_mib=row["memory"], gpus=row["gpus"],
            extra={"image": container.get("image")}, held=True,
        )
        try:
            handle = await self.executor.start(spec)
        except Exception as exc:
            self._finish_attempt(job_id, attempt, AttemptExit(None, f"CannotStartContainerError: {exc}"[:255]))
            return None
        # The attempt is held until its handle is committed: a crash before that leaves a command that certainly
        # never ran, which the restart simply starts again (docs/durability.md).
        try:
            recorded = job_id in self._settle_batch([Started(job_id, attempt, handle, stream)])
        except BaseException:
            self.executor.release(handle, run=False)
            raise
        self.executor.release(handle, run=recorded)
        if not recorded:
            return None  # the job moved on meanwhile (e.g. another server reconciled it): it never runs here
        if job_id in self._terminate_after_release:
            self._terminate_after_release.discard(job_id)
            self._terminate_process(job_id, handle)
        return handle

    def _finish_attempt(self, job_id: str, attempt: int, result: AttemptExit, retry: bool = True,
                        ran_on: str | None = None) -> None:
        """Settle one ended attempt now, in its own transaction."""
        self._settle_batch([Ended(job_id, attempt, result, retry, ran_on)])

    # --- settling attempts in batches ---------------------------------------------------------------------

    def _to_settle(self, item: Ended) -> None:
        """Record an attempt's end with every other one that happens in this turn of the event loop: they are
        written together, in one transaction, as soon as the loop has run the callbacks that were ready (no
        timer: nothing waits longer than one loop turn). Deferring is safe: the wrapper has already recorded
        the exit status next to the attempt, and a restart settles the job from it."""
        self._settling.append(item)
        if len(self._settling) == 1:
            asyncio.get_running_loop().call_soon(self._settle_pending)

    def _settle_pending(self) -> None:
        items, self._settling = self._settling, []
        if not items:
            return
        try:
            self._settle_batch(items)
        except Exception:
            # One bad item must not hold back the others: settle them one by one.
            log.exception("settling %d attempts together failed; settling them one by one", len(items))
            for item in items:
                try:
                    self._settle_batch([item])
                except Exception:
                    log.exception("settling the attempt of job %s failed", item.job_id)

    def _settle_batch(self, items: list[Started | Ended]) -> set[str]:
        """Write these attempt starts and ends in one transaction: one locked read of their jobs, one update
        per kind of change, one insert of their events, one look for what their ends release. Returns the ids
        of the jobs whose start was recorded."""
        now = J.now_ms()
        to_terminate: list[tuple[str, dict[str, Any]]] = []
        recorded: set[str] = set()
        with self.db.tx() as conn:
            rows = store.get_many_for_update(conn, [i.job_id for i in items])
            later = Counter(i.job_id for i in items)  # items of each job still to come in this batch
            saves: list[tuple[dict[str, Any], dict[str, Any]]] = []
            ended_rows: list[dict[str, Any]] = []
            for item in items:
                later[item.job_id] -= 1
                row = rows.get(item.job_id)
                if row is None or row["status"] in J.TERMINAL or row["attempt"] != item.attempt:
                    continue
                ran_on = (item.ran_on if isinstance(item, Ended) else None) or self.server_id
                if row["owner"] not in (None, ran_on) or (isinstance(item, Started) and row["status"] != J.STARTING):
                    continue  # given back and claimed again (same attempt number) meanwhile: not this attempt
                changes = self._settle_changes(row, item, now, to_terminate)
                if isinstance(item, Ended):
                    ended_rows.append(row)
                else:
                    recorded.add(item.job_id)
                if later[item.job_id]:
                    # Start and end of one attempt in the same batch (the process ended within one loop turn
                    # of its start): write the start now, so that the end is computed from it.
                    store.save(conn, row, changes, now)
                else:
                    saves.append((row, changes))
            store.save_many(conn, saves, now)
            if ended_rows and not self.cluster.is_leader:
                self.cluster.publish(conn, "jobs")
            finished = [r for r in ended_rows if r["status"] in J.TERMINAL]
            expand = lifecycle.finished_many(conn, finished, now) if finished else False
        for item in items:
            if isinstance(item, Ended):
                self._terminating.discard(item.job_id)
        # A job terminated while STARTING: stopped once released (a held wrapper would just exit unreleased).
        self._terminate_after_release.update(job_id for job_id, _ in to_terminate)
        if expand:
            self._wake_full()
        elif self._timeouts or any(isinstance(i, Ended) for i in items):
            # Capacity freed, retries and released dependents are RUNNABLE: placing them is all there is to do.
            self._wake_dispatch()
        return recorded

    def _settle_changes(self, row: dict[str, Any], item: Started | Ended, now: int,
                        to_terminate: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        if isinstance(item, Started):
            changes = settle.running_changes(row, item, now)
            if changes.get("deadline_at"):
                heapq.heappush(self._timeouts, (changes["deadline_at"], item.job_id, item.attempt))
            if row["is_terminated"]:
                to_terminate.append((item.job_id, item.handle))
            return changes
        if row["ce_arn"] and row["status"] in J.ACTIVE:
            self.ledger.release(row["ce_arn"], _need(row))
        return settle.ended_changes(row, item, now)

    # --- cancel, terminate, timeouts -------------------------------------------------------------------

    def cancel(self, row: dict[str, Any], reason: str) -> None:
        """CancelJob on one job (inside its own transaction)."""
        with self.db.tx() as conn:
            current = store.get_for_update(conn, row["id"])
            if current is not None and lifecycle.cancel(conn, current, reason, J.now_ms()):
                self._wake_full()
                if not self.cluster.is_leader:
                    self.cluster.publish(conn, "jobs")

    def terminate(self, row: dict[str, Any], reason: str) -> None:
        """TerminateJob: stop a STARTING/RUNNING attempt; cancel anything earlier; an array: every child."""
        now = J.now_ms()
        with self.db.tx() as conn:
            current = store.get_for_update(conn, row["id"])
            if current is None or current["status"] in J.TERMINAL:
                return
            if not self.cluster.is_leader:
                self.cluster.publish(conn, "jobs")
            if current["array_size"] is not None and current["parent_id"] is None:
                # Children that have not started are cancelled; running ones are terminated below.
                lifecycle.cancel(conn, current, reason, now)
                active = [k for k in store.children(conn, current["id"]) if k["status"] in J.ACTIVE]
            elif current["status"] not in J.ACTIVE:
                lifecycle.cancel(conn, current, reason, now)
                active = []
            else:
                active = [current]
        for job in active:
            self._terminate_active(job["id"], reason)
        self._wake_full()

    def _terminate_active(self, job_id: str, reason: str) -> None:
        with self.db.tx() as conn:
            current = store.get_for_update(conn, job_id)
            if current is None or current["status"] not in J.ACTIVE or current["is_terminated"]:
                return
            store.save(conn, current, {"is_terminated": True, "status_reason": reason}, J.now_ms())
            handle = self._handles.get(job_id) or current["runtime"].get("handle")
            if current["owner"] not in (None, self.server_id):
                self.cluster.publish(conn, "terminate", current["owner"])  # its server holds the process
                return
        if handle is not None:  # still STARTING without a process: _start_attempt sees the flag
            self._terminate_process(job_id, handle)

    def _terminate_process(self, job_id: str, handle: dict[str, Any]) -> None:
        if job_id in self._terminating:
            return
        self._terminating.add(job_id)
        grace = self.settings.terminate_grace_seconds
        task = asyncio.create_task(self.executor.terminate(handle, grace))
        task.add_done_callback(lambda t: t.cancelled() or t.exception() and log.error(
            "terminating %s failed: %s", job_id, t.exception()))

    def _pickup_claimed(self) -> None:
        """Start the attempts the scheduling server assigned to this server."""
        if not self._reconciled:
            return  # the restart reconciliation decides about claimed jobs first
        for row in store.claimed_by(self.db.conn, self.server_id):
            if row["id"] not in self._attempts and not row["runtime"].get("handle"):
                self._start_claimed(row, _name_of(row["queue_arn"]))

    def _start_claimed(self, row: dict[str, Any], queue_name: str) -> None:
        """A STARTING job with no process recorded. If its command certainly never ran (never spawned, or still
        held when this server stopped), start it now. Otherwise (an attempt from before held starts) it may
        have run: fail the attempt without retry, so that nothing can ever run twice."""
        if not self.executor.never_ran(row["id"], row["attempt"], row["account"]):
            reason = "batchd stopped while starting the job; whether its process ran is unknown"
            self._finish_attempt(row["id"], row["attempt"], AttemptExit(None, reason), retry=False)
            return
        self._attempts[row["id"]] = asyncio.create_task(
            self._supervise(row, queue_name, _name_of(row["ce_arn"] or ""), None))

    def _pickup_terminations(self) -> None:
        """TerminateJob (or a timeout) was requested through another server for a job running here."""
        for row in store.terminating_owned_by(self.db.conn, self.server_id):
            handle = self._handles.get(row["id"]) or row["runtime"].get("handle")
            if handle is not None:
                self._terminate_process(row["id"], handle)

    def _fire_timeouts(self, now: int) -> None:
        while self._timeouts and self._timeouts[0][0] <= now:
            _, job_id, attempt = heapq.heappop(self._timeouts)
            with self.db.tx() as conn:
                # Locked: the attempt may end, or be terminated, through another server at the same moment.
                row = store.get_for_update(conn, job_id)
                if row is None or row["status"] != J.RUNNING or row["attempt"] != attempt:
                    continue
                store.save(conn, row, {"runtime": {**row["runtime"], "timedOut": True}}, now)
                handle = self._handles.get(job_id) or row["runtime"].get("handle")
            if handle is not None:
                self._terminate_process(job_id, handle)

    def on_queue_deleted(self, queue_arn: str) -> None:
        """AWS eventually terminates every job of a deleted queue."""
        now = J.now_ms()
        with self.db.tx() as conn:
            rows = store.unfinished_in_queue(conn, queue_arn)
            for row in rows:
                if row["status"] not in J.ACTIVE:
                    # Re-read, locked: failing an earlier job may have failed this one already (a dependency
                    # cascade), and another server may be cancelling it.
                    current = store.get_for_update(conn, row["id"])
                    if current is not None and current["status"] not in J.TERMINAL | J.ACTIVE:
                        lifecycle.fail(conn, current, J.REASON_QUEUE_DELETED, now, is_cancelled=True)
        for row in rows:
            if row["status"] in J.ACTIVE:
                self._terminate_active(row["id"], J.REASON_QUEUE_DELETED)
        self._wake_full()

    # --- restart ------------------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """After a (re)start: count capacity in use, adopt live attempts, settle the ones that ended."""
        rows = [r for r in store.with_status(self.db.conn, [J.STARTING, J.RUNNING])
                if r["owner"] in (None, self.server_id)]
        queue_names = {q["jobQueueArn"]: q["jobQueueName"] for q in resources.all_resources(self.db.conn, "job-queue")}
        for row in rows:
            if row["ce_arn"]:
                self.ledger.add(row["ce_arn"], _need(row))
            if row["id"] in self._attempts:
                continue  # already picked up (the election to scheduler picks up claimed jobs first)
            handle = row["runtime"].get("handle")  # written together with RUNNING: STARTING jobs have none
            if handle is None:
                self._start_claimed(row, queue_names.get(row["queue_arn"], _name_of(row["queue_arn"])))
                continue
            if row["deadline_at"]:
                heapq.heappush(self._timeouts, (row["deadline_at"], row["id"], row["attempt"]))
            ce_name = _name_of(row["ce_arn"] or "")
            self._attempts[row["id"]] = asyncio.create_task(
                self._supervise(row, queue_names.get(row["queue_arn"], _name_of(row["queue_arn"])), ce_name, handle))
            if row["is_terminated"]:
                self._terminate_process(row["id"], handle)
        self._reconciled = True
        self._wake_full()

