"""Where a job attempt runs and where its output lives, and the CloudWatch-style stream name that points at it.

Pure: paths are computed, never touched. Two roots (docs/executors.md, "Layout"):

* the **jobs root** holds the jobs' working directories, one per account: `<jobs root>/<account>/<job>/<attempt>/`;
* the **output root** (inside the server's data dir, out of the jobs' working directories) holds what batchd
  keeps about an attempt: `<output root>/<job>/<attempt>.stdout.log`, `<attempt>.stderr.log` and their
  timestamp sidecars (`.idx`). One directory per job, not per attempt: a directory costs a mkdir per start.
"""

from __future__ import annotations

import re
from pathlib import Path

LOG_GROUP = "/aws/batch/job"
# Bounded everywhere: a job definition name has at most 128 characters in AWS (200 kept, as before), an array
# index is below 10,000 and an attempt at most 10, so no digit run is long enough to hurt int().
_STREAM_RE = re.compile(
    r"^(?P<jd>[^/]{1,200})/default/(?P<job>[0-9a-f-]{36}(?:_\d{1,5})?)_(?P<attempt>\d{1,5})$"
)
MAX_STREAM_NAME = 512  # CloudWatch's LogStreamName length limit
STDOUT, STDERR = "stdout", "stderr"
SOURCES = (STDOUT, STDERR)
LEGACY_OUTPUT = "output.log"  # attempts started before stdout and stderr were kept apart


def _safe_job_id(job_id: str) -> str:
    # Array children are "<uuid>:<index>"; ':' is not allowed in CloudWatch stream names.
    return job_id.replace(":", "_")


def _safe_account(account: str) -> str:
    return account if account.isdigit() else "_"


def stream_name(job_definition_name: str, job_id: str, attempt: int) -> str:
    """`<jobDefinitionName>/default/<jobId>_<attempt>`, like AWS's `<jdName>/default/<taskId>`."""
    return f"{job_definition_name[:200]}/default/{_safe_job_id(job_id)}_{attempt}"


def parse_stream_name(stream: str) -> tuple[str, str, int] | None:
    """(job definition name, job id, attempt) or None when the name is not one of ours."""
    if len(stream) > MAX_STREAM_NAME:
        return None
    m = _STREAM_RE.match(stream)
    if not m:
        return None
    job = m.group("job")
    if "_" in job:
        base, _, index = job.partition("_")
        job = f"{base}:{index}"
    return m.group("jd"), job, int(m.group("attempt"))


def attempt_dir(jobs_root: Path, account: str, job_id: str, attempt: int) -> Path:
    """The attempt's working directory (the job's cwd), under its account's directory."""
    return Path(jobs_root) / _safe_account(account) / _safe_job_id(job_id) / str(attempt)


def output_dir(output_root: Path, job_id: str) -> Path:
    """Where batchd keeps the job's output and timestamps (never inside a job's working directory)."""
    return Path(output_root) / _safe_job_id(job_id)


def output_path(output_root: Path, job_id: str, attempt: int, source: str = STDOUT) -> Path:
    """The file that receives the attempt's stdout (or stderr)."""
    return output_dir(output_root, job_id) / f"{attempt}.{source}.log"


def index_path(output_root: Path, job_id: str, attempt: int, source: str = STDOUT) -> Path:
    """The timestamp sidecar of one output file (`store.logfiles`)."""
    return output_dir(output_root, job_id) / f"{attempt}.{source}.idx"


def legacy_attempt_dir(data_dir: Path, job_id: str, attempt: int) -> Path:
    """Before per-account working directories: `<data dir>/jobs/<job>/<attempt>/` held `output.log` too."""
    return Path(data_dir) / "jobs" / _safe_job_id(job_id) / str(attempt)
