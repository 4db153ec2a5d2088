"""Where a job attempt's output lives, and the CloudWatch-style stream name that points at it. Pure."""

from __future__ import annotations

import re
from pathlib import Path

LOG_GROUP = "/aws/batch/job"
_STREAM_RE = re.compile(r"^(?P<jd>[^/]{1,200})/default/(?P<job>[0-9a-f-]{36}(?:_\d+)?)_(?P<attempt>\d+)$")


def _safe_job_id(job_id: str) -> str:
    # Array children are "<uuid>:<index>"; ':' is not allowed in CloudWatch stream names.
    return job_id.replace(":", "_")


def stream_name(job_definition_name: str, job_id: str, attempt: int) -> str:
    """`<jobDefinitionName>/default/<jobId>_<attempt>`, like AWS's `<jdName>/default/<taskId>`."""
    return f"{job_definition_name[:200]}/default/{_safe_job_id(job_id)}_{attempt}"


def parse_stream_name(stream: str) -> tuple[str, str, int] | None:
    """(job definition name, job id, attempt) or None when the name is not one of ours."""
    m = _STREAM_RE.match(stream)
    if not m:
        return None
    job = m.group("job")
    if "_" in job:
        base, _, index = job.partition("_")
        job = f"{base}:{index}"
    return m.group("jd"), job, int(m.group("attempt"))


def attempt_dir(jobs_root: Path, job_id: str, attempt: int) -> Path:
    """The attempt's working directory; its output is `output.log` inside it."""
    return Path(jobs_root) / _safe_job_id(job_id) / str(attempt)


def output_path(jobs_root: Path, job_id: str, attempt: int) -> Path:
    return attempt_dir(jobs_root, job_id, attempt) / "output.log"
