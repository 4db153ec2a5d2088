"""Airflow's Amazon provider against batchd: what BatchOperator sends is accepted, and the operator works end to end.

The acceptance test runs Airflow in its own venv, because Airflow pins its own boto3/botocore. Install it once:

    python3 -m venv .venv-airflow && .venv-airflow/bin/pip install -r tests/airflow-requirements.txt

Without that venv the test skips locally, but it fails when CI is set. It must run in CI and never skip there
(.ci/run installs the venv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REGION, REPO, Server

AIRFLOW_PYTHON = Path(os.environ.get("BATCHD_AIRFLOW_PYTHON", REPO / ".venv-airflow" / "bin" / "python"))
INSTALL = "python3 -m venv .venv-airflow && .venv-airflow/bin/pip install -r tests/airflow-requirements.txt"
DAG_FILE = Path(__file__).with_name("airflow_dag.py")
RESULT_MARKER = "BATCHD-AIRFLOW-RESULT "  # as in airflow_dag.py
# A hang detector, not a measurement: Airflow's default polling sleeps 1-10 s between checks (random), so one
# task takes 10-40 s; a loaded machine can make it several times that.
AIRFLOW_TIMEOUT_SECONDS = 900

RESOURCES = [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "128"}]
SUCCEEDS = "echo first line from the job; echo second line from the job on stderr >&2"
FAILS = "echo the job is about to fail; exit 3"


def _container(script: str) -> dict:
    return {"image": "busybox", "command": ["sh", "-c", script], "resourceRequirements": RESOURCES}


def test_what_batch_operator_sends_is_accepted(batch, unique) -> None:
    # BatchOperator's SubmitJob with default arguments (operators/batch.py: `tags or {}`, `parameters or {}`),
    # and BatchCreateComputeEnvironmentOperator's `"tags": {}`; AWS accepts both (docs/api-validation.md).
    ce = unique("af-ce")
    batch.create_compute_environment(computeEnvironmentName=ce, type="UNMANAGED", unmanagedvCpus=1, tags={})
    queue = unique("af-q")
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}], tags={}
    )
    jd = unique("af-jd")
    batch.register_job_definition(jobDefinitionName=jd, type="container", containerProperties=_container("true"),
                                  tags={})
    job_id = batch.submit_job(jobName="airflow", jobQueue=queue, jobDefinition=jd, parameters={}, tags={})["jobId"]
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["tags"] == {}
    # The bulk operations have no minimum either: an empty list is processed as nothing to do.
    for empty in (batch.cancel_jobs(jobs=[], reason="r"), batch.terminate_jobs(jobs=[], reason="r")):
        assert (empty["successful"], empty["errors"]) == ([], [])


def _airflow_python() -> Path:
    if AIRFLOW_PYTHON.exists():
        return AIRFLOW_PYTHON
    message = f"Airflow is not installed at {AIRFLOW_PYTHON}; install it with: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI must run this test, never skip it
    pytest.skip(message)


def _airflow_env(python: Path, home: Path, endpoint_url: str) -> dict[str, str]:
    """A clean environment: the AWS connection comes only from AIRFLOW_CONN_AWS_DEFAULT, no AWS_* leak in."""
    connection = {
        "conn_type": "aws",
        "login": "AKIDAIRFLOW",
        "password": "airflow-dummy-secret",
        # One endpoint_url serves every client the provider makes: its Batch client and the CloudWatch Logs
        # client of the log fetcher (connection_wrapper.get_service_endpoint_url falls back to it when the
        # extra has no service_config), and batchd answers both on the same URL.
        "extra": {"region_name": REGION, "endpoint_url": endpoint_url},
    }
    return {
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
    }


def _run(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=AIRFLOW_TIMEOUT_SECONDS)
    output = proc.stdout + proc.stderr
    log.write_text(output)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}; the end of {log}:\n{output[-4000:]}"
    return output


def _task_logs(output: str) -> dict[str, str]:
    """The part of dag.test()'s output (each task's log, in turn) that belongs to each task."""
    sections: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        if "[DAG TEST] starting task_id=" in line:
            current = line.split("task_id=", 1)[1].split()[0]
        elif "[DAG TEST] end task task_id=" in line:
            current = None
        elif current is not None:
            sections[current] = sections.get(current, "") + line + "\n"
    return sections


def _forwarded_job_lines(task_log: str) -> list[str]:
    """Lines of the task log that the operator's CloudWatch log fetcher read from the job's log stream."""
    return [line for line in task_log.splitlines() if "task_log_fetcher.py" in line]


def _make_airflow_resources(srv: Server) -> None:
    batch = srv.client()
    batch.create_compute_environment(computeEnvironmentName="airflow", type="UNMANAGED", unmanagedvCpus=2)
    batch.create_job_queue(
        jobQueueName="airflow", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "airflow"}]
    )
    batch.register_job_definition(jobDefinitionName="succeeds", type="container",
                                  containerProperties=_container(SUCCEEDS))
    batch.register_job_definition(jobDefinitionName="fails", type="container", containerProperties=_container(FAILS))


@pytest.mark.slow
def test_batch_operator_with_default_arguments(make_server, tmp_path: Path) -> None:
    python = _airflow_python()
    srv = make_server()
    _make_airflow_resources(srv)
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    env = _airflow_env(python, home, srv.url)
    _run([str(python.parent / "airflow"), "db", "migrate"], env, home, tmp_path / "airflow-db-migrate.log")
    output = _run([str(python), str(home / "dags" / DAG_FILE.name)], env, home, tmp_path / "airflow-dag-test.log")

    result_lines = [line for line in output.splitlines() if line.startswith(RESULT_MARKER)]
    assert result_lines, f"no result line; the end of the output:\n{output[-4000:]}"
    result = json.loads(result_lines[-1][len(RESULT_MARKER):])
    assert result["tasks"] == {"succeeds": "success", "fails": "failed"}, output[-4000:]

    logs = _task_logs(output)
    # The job's output (stdout and stderr), read through batchd's Logs endpoint, is in the task's log.
    forwarded = _forwarded_job_lines(logs["succeeds"])
    assert any("] first line from the job [" in line for line in forwarded), logs["succeeds"]
    assert any("second line from the job on stderr" in line for line in forwarded), logs["succeeds"]
    # The failed job's task raised: the operator's AirflowException, after the job's own output.
    assert any("the job is about to fail" in line for line in _forwarded_job_lines(logs["fails"])), logs["fails"]
    assert "Task failed with exception" in logs["fails"]
    assert "AirflowException: AWS Batch job (" in logs["fails"] and "'status': 'FAILED'" in logs["fails"]

    # And batchd ran exactly these two jobs, submitted with Airflow's default `"tags": {}`.
    batch = srv.client()
    summaries = batch.list_jobs(jobQueue="airflow", filters=[{"name": "JOB_NAME", "values": ["airflow-*"]}])
    jobs = batch.describe_jobs(jobs=[s["jobId"] for s in summaries["jobSummaryList"]])["jobs"]
    assert sorted((j["jobName"], j["status"], j["tags"]) for j in jobs) == [
        ("airflow-fails", "FAILED", {}),
        ("airflow-succeeds", "SUCCEEDED", {}),
    ]
