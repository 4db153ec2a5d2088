"""Job queues: create (compute environment order, policies, time-limit actions), describe, update, delete."""

from __future__ import annotations

import pytest

from conftest import wait_for

ACCOUNT_PREFIX = "arn:aws:batch:us-east-1:123456789012"


def client_error(excinfo) -> str:
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Message"]


def make_ce(batch, unique, cr_type: str = "EC2", orchestration: str = "ECS") -> str:
    name = unique("ce")
    args = {
        "computeEnvironmentName": name,
        "type": "MANAGED",
        "computeResources": {"type": cr_type, "maxvCpus": 4, "subnets": ["subnet-1"]},
    }
    if cr_type in ("EC2", "SPOT"):
        args["computeResources"]["instanceRole"] = "ecsInstanceRole"  # AWS requires it for EC2 instances
    if orchestration == "EKS":
        args["eksConfiguration"] = {
            "eksClusterArn": "arn:aws:eks:us-east-1:123456789012:cluster/c",
            "kubernetesNamespace": "batch",
        }
    return batch.create_compute_environment(**args)["computeEnvironmentArn"]


def make_policy(batch, unique) -> str:
    return batch.create_scheduling_policy(name=unique("sp"), fairsharePolicy={"shareDecaySeconds": 60})["arn"]


def describe_q(batch, ref: str) -> dict | None:
    docs = batch.describe_job_queues(jobQueues=[ref])["jobQueues"]
    return docs[0] if docs else None


def wait_valid(batch, ref: str) -> dict:
    return wait_for(
        lambda: (d := describe_q(batch, ref)) and d["status"] == "VALID" and d,
        timeout=10,
        message=f"{ref} VALID",
    )


def make_queue(batch, unique, ces: list[str], **kw) -> str:
    name = unique("q")
    batch.create_job_queue(
        jobQueueName=name,
        priority=kw.pop("priority", 1),
        computeEnvironmentOrder=[{"order": i, "computeEnvironment": c} for i, c in enumerate(ces)],
        **kw,
    )
    wait_valid(batch, name)
    return name


def test_create_and_describe(batch, unique):
    ce1, ce2 = make_ce(batch, unique), make_ce(batch, unique, "SPOT")
    ce1_name = ce1.rsplit("/", 1)[1]
    name = unique("q")
    actions = [{"reason": "stuck", "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "CANCEL"}]
    out = batch.create_job_queue(
        jobQueueName=name,
        priority=7,
        tags={"a": "b"},
        jobStateTimeLimitActions=actions,
        computeEnvironmentOrder=[
            {"order": 2, "computeEnvironment": ce2},
            {"order": 1, "computeEnvironment": ce1_name},
        ],
    )
    arn = f"{ACCOUNT_PREFIX}:job-queue/{name}"
    assert out["jobQueueName"] == name and out["jobQueueArn"] == arn
    assert describe_q(batch, name)["status"] in ("CREATING", "VALID")
    doc = wait_valid(batch, arn)
    assert doc == {
        "jobQueueName": name,
        "jobQueueArn": arn,
        "state": "ENABLED",
        "status": "VALID",
        "statusReason": "JobQueue Healthy",
        "priority": 7,
        # CE names are stored as ARNs, in the order given.
        "computeEnvironmentOrder": [
            {"order": 2, "computeEnvironment": ce2},
            {"order": 1, "computeEnvironment": ce1},
        ],
        "jobQueueType": "ECS",
        "tags": {"a": "b"},
        "jobStateTimeLimitActions": actions,
    }


def test_queue_type_follows_compute_environments(batch, unique):
    fargate = make_queue(
        batch, unique, [make_ce(batch, unique, "FARGATE"), make_ce(batch, unique, "FARGATE_SPOT")]
    )
    assert describe_q(batch, fargate)["jobQueueType"] == "ECS_FARGATE"
    eks = make_queue(batch, unique, [make_ce(batch, unique, orchestration="EKS")])
    assert describe_q(batch, eks)["jobQueueType"] == "EKS"
    with pytest.raises(batch.exceptions.ClientException) as exc:
        make_queue(batch, unique, [make_ce(batch, unique)], jobQueueType="ECS_FARGATE")
    assert "jobQueueType" in client_error(exc)


def test_create_rejects(batch, unique):
    ec2, fargate = make_ce(batch, unique), make_ce(batch, unique, "FARGATE")
    four = [make_ce(batch, unique) for _ in range(4)]
    cases = [
        ([{"order": 1, "computeEnvironment": "no-such-ce"}], {}, "does not exist"),
        (
            [{"order": 1, "computeEnvironment": ec2}, {"order": 1, "computeEnvironment": four[0]}],
            {},
            "order 1",
        ),
        (
            [{"order": 1, "computeEnvironment": ec2}, {"order": 2, "computeEnvironment": ec2}],
            {},
            "more than once",
        ),
        ([{"order": i, "computeEnvironment": c} for i, c in enumerate(four)], {}, "3"),
        ([], {}, "computeEnvironmentOrder"),
        ([{"order": 1, "computeEnvironment": ec2}, {"order": 2, "computeEnvironment": fargate}], {}, "mixed"),
        (
            [{"order": 1, "computeEnvironment": ec2}],
            {"schedulingPolicyArn": f"{ACCOUNT_PREFIX}:scheduling-policy/none"},
            "does not exist",
        ),
        ([{"order": 1, "computeEnvironment": ec2}], {"priority": 1001}, "priority"),
        ([{"order": 1, "computeEnvironment": ec2}], {"state": "PAUSED"}, "PAUSED"),
        (
            [{"order": 1, "computeEnvironment": ec2}],
            {
                "jobStateTimeLimitActions": [
                    {"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 86401, "action": "CANCEL"}
                ]
            },
            "maxTimeSeconds",
        ),
        (
            [{"order": 1, "computeEnvironment": ec2}],
            {
                "jobStateTimeLimitActions": [
                    {"reason": "r", "state": "RUNNING", "maxTimeSeconds": 600, "action": "CANCEL"}
                ]
            },
            "RUNNING",
        ),
        ([{"order": 1, "computeEnvironment": ec2}], {"tags": {"aws:reserved": "x"}}, "aws:"),
    ]
    for order, extra, words in cases:
        args = {"jobQueueName": unique("q"), "priority": 1, "computeEnvironmentOrder": order, **extra}
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.create_job_queue(**args)
        assert words in client_error(exc), (order, extra)


def test_duplicate_name_and_bad_name(batch, unique):
    ce = make_ce(batch, unique)
    name = make_queue(batch, unique, [ce])
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_job_queue(
            jobQueueName=name, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
        )
    assert "already exists" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_job_queue(
            jobQueueName="bad name",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )
    assert "jobQueueName" in client_error(exc)


def test_missing_priority_server_side(server, batch, unique):
    raw = server.client(parameter_validation=False)
    ce = make_ce(batch, unique)
    with pytest.raises(raw.exceptions.ClientException) as exc:
        raw.create_job_queue(
            jobQueueName=unique("q"), computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}]
        )
    assert "priority" in client_error(exc)


def test_update(batch, unique):
    ce1, ce2 = make_ce(batch, unique), make_ce(batch, unique)
    name = make_queue(batch, unique, [ce1])
    out = batch.update_job_queue(
        jobQueue=name,
        state="DISABLED",
        priority=99,
        computeEnvironmentOrder=[{"order": 5, "computeEnvironment": ce2}],
        jobStateTimeLimitActions=[
            {"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 700, "action": "CANCEL"}
        ],
    )
    assert out == {
        "jobQueueName": name,
        "jobQueueArn": f"{ACCOUNT_PREFIX}:job-queue/{name}",
        "ResponseMetadata": out["ResponseMetadata"],
    }
    assert describe_q(batch, name)["status"] in ("UPDATING", "VALID")
    doc = wait_valid(batch, name)
    assert doc["state"] == "DISABLED" and doc["priority"] == 99
    assert doc["computeEnvironmentOrder"] == [{"order": 5, "computeEnvironment": ce2}]
    assert doc["jobStateTimeLimitActions"][0]["maxTimeSeconds"] == 700
    batch.update_job_queue(jobQueue=doc["jobQueueArn"], jobStateTimeLimitActions=[])
    assert wait_valid(batch, name)["jobStateTimeLimitActions"] == []
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.update_job_queue(jobQueue=unique("missing"), priority=1)
    assert "does not exist" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.update_job_queue(
            jobQueue=name, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "nope"}]
        )
    assert "does not exist" in client_error(exc)


def test_scheduling_policy_replace_not_add(batch, unique):
    ce = make_ce(batch, unique)
    p1, p2 = make_policy(batch, unique), make_policy(batch, unique)
    fair = make_queue(batch, unique, [ce], schedulingPolicyArn=p1)
    assert describe_q(batch, fair)["schedulingPolicyArn"] == p1
    batch.update_job_queue(jobQueue=fair, schedulingPolicyArn=p2)
    assert wait_valid(batch, fair)["schedulingPolicyArn"] == p2
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.update_job_queue(jobQueue=fair, schedulingPolicyArn="")
    assert "not removed" in client_error(exc)
    fifo = make_queue(batch, unique, [ce])
    assert "schedulingPolicyArn" not in describe_q(batch, fifo)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.update_job_queue(jobQueue=fifo, schedulingPolicyArn=p1)
    assert "FIFO" in client_error(exc)


def test_delete(batch, unique):
    ce = make_ce(batch, unique)
    name = make_queue(batch, unique, [ce])
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_job_queue(jobQueue=name)
    assert "DISABLED" in client_error(exc)
    batch.update_job_queue(jobQueue=name, state="DISABLED")
    batch.delete_job_queue(jobQueue=name)
    doc = describe_q(batch, name)
    assert doc is None or doc["status"] == "DELETING"
    wait_for(lambda: describe_q(batch, name) is None, timeout=10, message="queue gone")
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_job_queue(jobQueue=name)
    assert "does not exist" in client_error(exc)
    # The compute environment can now go too.
    batch.update_compute_environment(computeEnvironment=ce, state="DISABLED")
    batch.delete_compute_environment(computeEnvironment=ce)


def test_delete_fails_waiting_jobs(batch, unique):
    # A queue whose only environment offers no capacity keeps its job RUNNABLE; deleting the queue fails it.
    ce = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=ce, type="UNMANAGED", unmanagedvCpus=0)
    queue = make_queue(batch, unique, [ce])
    jd = batch.register_job_definition(
        jobDefinitionName=unique("jd"),
        type="container",
        containerProperties={
            "image": "busybox",
            "command": ["true"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "16"}],
        },
    )["jobDefinitionArn"]
    job_id = batch.submit_job(jobName="j", jobQueue=queue, jobDefinition=jd)["jobId"]
    batch.update_job_queue(jobQueue=queue, state="DISABLED")
    batch.delete_job_queue(jobQueue=queue)

    def failed():
        jobs = batch.describe_jobs(jobs=[job_id])["jobs"]
        return jobs and jobs[0]["status"] == "FAILED" and jobs[0]

    job = wait_for(failed, timeout=15, message="job failed by queue deletion")
    assert job["statusReason"] == "JobQueue deleted"


def test_pagination_and_cli(make_server):
    srv = make_server()
    batch = srv.client()
    batch.create_compute_environment(computeEnvironmentName="ce", type="UNMANAGED", unmanagedvCpus=1)
    for i in range(5):
        batch.create_job_queue(
            jobQueueName=f"q{i}",
            priority=i,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
        )
    pages = list(batch.get_paginator("describe_job_queues").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["jobQueues"]) for p in pages] == [2, 2, 1]
    assert [q["jobQueueName"] for p in pages for q in p["jobQueues"]] == [f"q{i}" for i in range(5)]
    out = srv.aws("batch", "describe-job-queues")
    assert [q["jobQueueName"] for q in out["jobQueues"]] == [f"q{i}" for i in range(5)]
    out = srv.aws("batch", "describe-job-queues", "--job-queues", "q3", "nope")
    assert [q["jobQueueName"] for q in out["jobQueues"]] == ["q3"]
    err = srv.aws("batch", "delete-job-queue", "--job-queue", "q1", check=False)
    assert "ClientException" in err and "DISABLED" in err
    srv.aws("batch", "update-job-queue", "--job-queue", "q1", "--state", "DISABLED")
    srv.aws("batch", "delete-job-queue", "--job-queue", "q1")
    wait_for(lambda: len(batch.describe_job_queues()["jobQueues"]) == 4, timeout=10, message="q1 gone")
