"""scheduler/cluster.py rules that need no database: the post-commit wake-up never raises."""

from __future__ import annotations

import contextlib
import logging
from types import SimpleNamespace

import pytest

from batchd.scheduler.cluster import Cluster


class _BrokenDb:
    is_sqlite = False

    @contextlib.contextmanager
    def tx(self):
        raise ConnectionError("server closed the connection unexpectedly")
        yield  # pragma: no cover


def test_publish_now_after_a_commit_logs_a_database_failure_instead_of_raising(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    # Called after a request committed (SubmitJob on a non-scheduling server, every resource change): raising
    # here would answer 500 for a write that is already stored, and a retried SubmitJob would make a second job.
    service = SimpleNamespace(db=_BrokenDb(), data_dir=tmp_path,
                              settings=SimpleNamespace(server_id="s1", compute_environments=None))
    cluster = Cluster(service, lambda kind, target: None)
    with caplog.at_level(logging.WARNING, logger="batchd.cluster"):
        cluster.publish_now("jobs")
    assert "could not wake the other servers" in caplog.text
