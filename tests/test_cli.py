"""A new user's first hour with the `batchd` command: the real entry point, run as a subprocess."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, wait_for

BATCHD = str(Path(sys.executable).parent / "batchd")  # the console script pip installed


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHD_", "AWS_"))}
    return {**env, **extra}


def batchd(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BATCHD, *args], capture_output=True, text=True, env=env or clean_env(),
                          timeout=timeout, cwd=REPO)


def submit_and_finish(srv, command: list[str], name: str = "first") -> str:
    client = srv.client()
    client.create_compute_environment(computeEnvironmentName="ce", type="UNMANAGED", unmanagedvCpus=2)
    wait_for(lambda: client.describe_compute_environments(computeEnvironments=["ce"])["computeEnvironments"][0][
        "status"] == "VALID", message="compute environment VALID")
    client.create_job_queue(jobQueueName="q", priority=1,
                            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}])
    client.register_job_definition(jobDefinitionName="jd", type="container", containerProperties={
        "image": "busybox", "command": command,
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}]})
    job_id = client.submit_job(jobName=name, jobQueue="q", jobDefinition="jd")["jobId"]
    wait_for(lambda: client.describe_jobs(jobs=[job_id])["jobs"][0]["status"] in ("SUCCEEDED", "FAILED"),
             timeout=60, message="the job finished")
    return job_id


def log_with(srv, text: str) -> str:
    """The server's log, once it contains text ('' before)."""
    log = srv.log_path.read_text()
    return log if text in log else ""


def test_version() -> None:
    proc = batchd("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"batchd {importlib.metadata.version('batchd')}"


def test_events_defaults_to_the_local_server(make_server) -> None:
    srv = make_server(start=False)
    try:
        srv.start(port=8780)
    except RuntimeError as exc:
        if "cannot listen" in str(exc):
            pytest.skip("port 8780 is in use on this machine")
        raise
    job_id = submit_and_finish(srv, ["true"])
    proc = batchd("events", "--job-id", job_id)  # no --endpoint-url, no AWS_* variable
    assert proc.returncode == 0, proc.stderr
    statuses = [json.loads(line)["detail"]["status"] for line in proc.stdout.splitlines()]
    assert statuses[-1] == "SUCCEEDED", proc.stdout


def test_events_follows_aws_endpoint_url_batch(make_server) -> None:
    srv = make_server()
    job_id = submit_and_finish(srv, ["true"])
    proc = batchd("events", env=clean_env(AWS_ENDPOINT_URL_BATCH=srv.url))
    assert proc.returncode == 0, proc.stderr
    assert any(json.loads(line)["detail"]["jobId"] == job_id for line in proc.stdout.splitlines())


def test_events_names_the_server_it_cannot_reach(tmp_path) -> None:
    proc = batchd("events", env=clean_env(AWS_ENDPOINT_URL_BATCH="http://127.0.0.1:9"))
    assert proc.returncode != 0
    assert proc.stderr.startswith("batchd events: cannot reach http://127.0.0.1:9"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_server_logs_state_changes_and_refused_requests(make_server) -> None:
    srv = make_server(config='[[credentials]]\naccess_key_id = "AKIDDEV"\n'
                             'secret_access_key = "dev-secret"\naccount_id = "111111111111"\n')
    job_id = submit_and_finish(srv, ["sh", "-c", "exit 3"], name="loud")
    # The lines are written within 50 ms of the changes (gathered, store/state_log.py): wait for the last.
    log = wait_for(lambda: log_with(srv, f"job {job_id} (loud) FAILED"), message="the FAILED line")
    for status in ("RUNNABLE", "STARTING", "RUNNING"):
        assert re.search(rf"INFO batchd\.jobs: job {job_id} \(loud\) {status}$", log, re.M), log[-2000:]
    assert re.search(rf"INFO batchd\.jobs: job {job_id} \(loud\) FAILED: Essential container in task exited",
                     log), log[-2000:]
    with pytest.raises(Exception, match="not found"):
        srv.client().submit_job(jobName="x", jobQueue="nope", jobDefinition="jd")
    with pytest.raises(Exception, match="signature"):
        srv.client(secret="wrong-secret").describe_job_queues()
    log = wait_for(lambda: (text := srv.log_path.read_text()).count("INFO batchd.api:") >= 2 and text,
                   message="the refused requests logged")
    assert re.search(r"INFO batchd\.api: POST /v1/submitjob -> 400 ClientException: .*nope.* \(key AKIDDEV, "
                     r"request [0-9a-f-]{36}\)$", log, re.M), log[-2000:]
    assert re.search(r"POST /v1/describejobqueues -> 403 InvalidSignatureException: .*\(key AKIDDEV", log)
    assert "dev-secret" not in log and "wrong-secret" not in log


def test_log_level_warning_keeps_the_terminal_quiet(make_server) -> None:
    srv = make_server(extra_args=["--log-level", "warning"])
    submit_and_finish(srv, ["true"])
    srv.stop()  # the server's last lines are written when it stops: none of them is INFO
    assert "INFO" not in srv.log_path.read_text()


def test_bad_log_level_is_one_line(tmp_path) -> None:
    proc = batchd("serve", "--port", "0", "--data-dir", str(tmp_path / "d"), env=clean_env(BATCHD_LOG_LEVEL="loud"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "batchd: log_level 'loud' is not one of debug, info, warning, error"


@pytest.mark.parametrize("url", ["mysql://user@127.0.0.1/db", "postgresql+asyncpg://u@127.0.0.1/db",
                                 "postgresql+psycopg2://u:pw@127.0.0.1/db", "sqlite+aiosqlite:///x.db", "not a url"])
def test_unsupported_database_is_one_line(tmp_path, url: str) -> None:
    proc = batchd("serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--db", url)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("batchd: ") and "batchd supports sqlite:///PATH" in lines[0]
    assert "postgresql+psycopg://" in lines[0] and "pw" not in lines[0]


def test_missing_postgresql_driver_is_one_line(tmp_path) -> None:
    # A psycopg that cannot be imported, as on an install without the postgres extra.
    fake = tmp_path / "nopsycopg" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named psycopg')\n")
    env = clean_env(PYTHONPATH=str(fake.parent))
    proc = batchd("serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--db", "postgresql://u@127.0.0.1:5432/db", env=env)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == ('batchd: the PostgreSQL driver psycopg is not installed: pip install -e '
                                   '".[postgres]" (or pip install "psycopg[binary]")')


def test_setting_after_credentials_is_refused(tmp_path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[credentials]]\naccess_key_id = "A"\nsecret_access_key = "s"\naccount_id = "111111111111"\n'
                      "port = 9999\n")
    proc = batchd("serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("batchd: config: credentials entry 1 has unknown key(s) port; settings go "
                                   "before the first [[credentials]] table (or under [server])")


def test_readme_install_command_installs_the_aws_cli() -> None:
    readme = (REPO / "README.md").read_text()
    first = re.search(r"```sh\n(python3 -m venv .*)\n```", readme).group(1)
    assert first.endswith("&& batchd serve") and "\n" not in first
    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', first).group(1).split(",")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = [d for extra in extras for d in project["optional-dependencies"][extra]] + project["dependencies"]
    assert any(d.startswith("awscli") for d in installed), installed
    # the quick start's second shell activates the venv before using `aws` and `batchd`
    quick = readme.split("## Quick start", 1)[1].split("```sh\n", 1)[1]
    assert quick.startswith(". .venv/bin/activate\n")
