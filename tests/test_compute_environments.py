"""Compute environments: create, describe (names, ARNs, pages), update, delete, through boto3 and the aws CLI."""

from __future__ import annotations

import os
import re

import pytest

from conftest import wait_for

EC2 = {
    "type": "EC2",
    "maxvCpus": 8,
    "minvCpus": 0,
    "instanceTypes": ["optimal"],
    "subnets": ["subnet-1"],
    "securityGroupIds": ["sg-1"],
    "instanceRole": "ecsInstanceRole",
    "tags": {"ec2": "tag"},
    "allocationStrategy": "BEST_FIT_PROGRESSIVE",
}


def describe_ce(batch, ref: str) -> dict | None:
    docs = batch.describe_compute_environments(computeEnvironments=[ref])["computeEnvironments"]
    return docs[0] if docs else None


def wait_status(batch, ref: str, status: str) -> dict:
    return wait_for(
        lambda: (d := describe_ce(batch, ref)) and d["status"] == status and d,
        timeout=10,
        message=f"{ref} {status}",
    )


def make_ce(batch, unique, **kw) -> str:
    name = unique("ce")
    args = {"computeEnvironmentName": name, "type": "MANAGED", "computeResources": EC2, **kw}
    batch.create_compute_environment(**args)
    wait_status(batch, name, "VALID")
    return name


def client_error(excinfo) -> str:
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Message"]


def test_create_managed_echoes_everything(batch, unique):
    name = unique("ce")
    out = batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        computeResources=EC2,
        tags={"team": "a"},
        serviceRole="arn:aws:iam::123456789012:role/MyBatch",
    )
    arn = f"arn:aws:batch:us-east-1:123456789012:compute-environment/{name}"
    assert out["computeEnvironmentName"] == name and out["computeEnvironmentArn"] == arn
    first = describe_ce(batch, name)
    assert first["status"] in ("CREATING", "VALID")
    doc = wait_status(batch, arn, "VALID")
    assert doc["statusReason"] == "ComputeEnvironment Healthy"
    assert doc["state"] == "ENABLED" and doc["type"] == "MANAGED"
    # AWS fills in the current size and the default AMI family (docs/resources.md).
    ec2_configuration = [{"imageType": "ECS_AL2023"}]
    assert doc["computeResources"] == {**EC2, "desiredvCpus": 0, "ec2Configuration": ec2_configuration}
    assert doc["tags"] == {"team": "a"}
    assert doc["serviceRole"] == "arn:aws:iam::123456789012:role/MyBatch"
    assert doc["containerOrchestrationType"] == "ECS"
    assert re.fullmatch(r"[0-9a-f-]{36}", doc["uuid"])
    assert doc["ecsClusterArn"] == f"arn:aws:ecs:us-east-1:123456789012:cluster/{name}_Batch_{doc['uuid']}"
    assert "unmanagedvCpus" not in doc


def test_create_defaults_and_fargate(batch, unique):
    name = unique("ce")
    batch.create_compute_environment(
        computeEnvironmentName=name,
        type="MANAGED",
        computeResources={"type": "FARGATE", "maxvCpus": 16, "subnets": ["s"], "securityGroupIds": ["g"]},
    )
    doc = wait_status(batch, name, "VALID")
    # Fargate environments have no instance floor, so nothing is filled in.
    assert doc["computeResources"] == {
        "type": "FARGATE",
        "maxvCpus": 16,
        "subnets": ["s"],
        "securityGroupIds": ["g"],
    }
    assert doc["serviceRole"].endswith(":role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch")
    assert doc["tags"] == {}


def test_unmanaged(batch, unique):
    explicit = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=explicit, type="UNMANAGED", unmanagedvCpus=3)
    assert wait_status(batch, explicit, "VALID")["unmanagedvCpus"] == 3
    default = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=default, type="UNMANAGED")
    doc = wait_status(batch, default, "VALID")
    assert doc["unmanagedvCpus"] == (os.cpu_count() or 1)  # batchd's documented default: this host's CPUs
    assert "computeResources" not in doc


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"type": "MANAGED"}, "computeResources is required"),
        ({"type": "UNMANAGED", "computeResources": {"type": "EC2", "maxvCpus": 1}}, "must not be given"),
        (
            {"type": "MANAGED", "unmanagedvCpus": 2, "computeResources": {"type": "EC2", "maxvCpus": 1}},
            "UNMANAGED",
        ),
        ({"type": "MANAGED", "computeResources": {"type": "EC2", "maxvCpus": 1, "minvCpus": 2}}, "minvCpus"),
        (
            {"type": "MANAGED", "computeResources": {"type": "EC2", "maxvCpus": 4, "desiredvCpus": 5}},
            "desiredvCpus",
        ),
        ({"type": "MANAGED", "computeResources": {"type": "EC2", "maxvCpus": -1}}, "maxvCpus"),
        ({"type": "MANAGED", "computeResources": {"type": "GPU", "maxvCpus": 1}}, "GPU"),
        (
            {"type": "MANAGED", "state": "PAUSED", "computeResources": {"type": "EC2", "maxvCpus": 1}},
            "PAUSED",
        ),
        (
            {"type": "MANAGED", "computeResources": {"type": "EC2", "maxvCpus": 1}, "tags": {"aws:x": "1"}},
            "aws:",
        ),
    ],
)
def test_create_rejects(batch, unique, kwargs, words):
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_compute_environment(computeEnvironmentName=unique("ce"), **kwargs)
    assert words in client_error(exc)


def test_server_side_required_members(server, unique):
    # Raw callers skip botocore's client-side checks; the server must still refuse.
    raw = server.client(parameter_validation=False)
    with pytest.raises(raw.exceptions.ClientException) as exc:
        raw.create_compute_environment(
            computeEnvironmentName=unique("ce"), type="MANAGED", computeResources={"type": "EC2"}
        )
    assert "maxvCpus" in client_error(exc)
    with pytest.raises(raw.exceptions.ClientException) as exc:
        raw.create_compute_environment(computeEnvironmentName=unique("ce"))
    assert "type" in client_error(exc)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "dot.name", "ünïcode"])
def test_create_rejects_bad_names(batch, bad):
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_compute_environment(computeEnvironmentName=bad, type="UNMANAGED")
    assert "computeEnvironmentName" in client_error(exc)


def test_duplicate_name(batch, unique):
    name = make_ce(batch, unique)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED")
    message = client_error(exc)
    assert "already exists" in message and name in message


def test_describe_by_name_arn_unknown_and_limit(batch, unique):
    a, b = make_ce(batch, unique), make_ce(batch, unique)
    arn_b = describe_ce(batch, b)["computeEnvironmentArn"]
    docs = batch.describe_compute_environments(computeEnvironments=[a, arn_b, "nope", a])[
        "computeEnvironments"
    ]
    assert [d["computeEnvironmentName"] for d in docs] == [a, b]
    other_account = arn_b.replace("123456789012", "210987654321")
    assert (
        batch.describe_compute_environments(computeEnvironments=[other_account])["computeEnvironments"] == []
    )
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.describe_compute_environments(computeEnvironments=["x"] * 101)
    assert "100" in client_error(exc)


def test_region_isolation(server, batch, unique):
    name = make_ce(batch, unique)
    west = server.client(region="us-west-2")
    assert west.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"] == []
    # The same name is free in another region.
    west.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED")
    doc = wait_for(
        lambda: west.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    )
    assert doc[0]["computeEnvironmentArn"].startswith("arn:aws:batch:us-west-2:123456789012:")


def test_pagination_is_stable_while_adding(make_server):
    srv = make_server()
    batch = srv.client()
    for i in range(5):
        batch.create_compute_environment(computeEnvironmentName=f"ce{i}", type="UNMANAGED", unmanagedvCpus=1)
    page1 = batch.describe_compute_environments(maxResults=2)
    assert [d["computeEnvironmentName"] for d in page1["computeEnvironments"]] == ["ce0", "ce1"]
    batch.create_compute_environment(computeEnvironmentName="ce5", type="UNMANAGED", unmanagedvCpus=1)
    names, token = [], page1["nextToken"]
    while token:
        page = batch.describe_compute_environments(maxResults=2, nextToken=token)
        names += [d["computeEnvironmentName"] for d in page["computeEnvironments"]]
        token = page.get("nextToken")
    assert names == ["ce2", "ce3", "ce4", "ce5"]
    everything = batch.describe_compute_environments()
    assert len(everything["computeEnvironments"]) == 6 and "nextToken" not in everything
    # The boto3 paginator follows the same tokens.
    pages = batch.get_paginator("describe_compute_environments").paginate(PaginationConfig={"PageSize": 4})
    assert [d["computeEnvironmentName"] for p in pages for d in p["computeEnvironments"]] == [
        f"ce{i}" for i in range(6)
    ]
    for bad in ({"maxResults": 0}, {"maxResults": 101}, {"nextToken": "garbage"}):
        with pytest.raises(batch.exceptions.ClientException):
            batch.describe_compute_environments(**bad)
    # A job-queue token is not a compute-environment token.
    batch.create_job_queue(
        jobQueueName="q0", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce0"}]
    )
    batch.create_job_queue(
        jobQueueName="q1", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce0"}]
    )
    queue_token = batch.describe_job_queues(maxResults=1)["nextToken"]
    with pytest.raises(batch.exceptions.ClientException):
        batch.describe_compute_environments(nextToken=queue_token)


def test_update(batch, unique):
    name = make_ce(batch, unique)
    out = batch.update_compute_environment(
        computeEnvironment=name,
        state="DISABLED",
        computeResources={"maxvCpus": 32, "minvCpus": 2},
        serviceRole="arn:aws:iam::123456789012:role/Other",
        updatePolicy={"terminateJobsOnUpdate": True},
    )
    assert out["computeEnvironmentName"] == name
    assert describe_ce(batch, name)["status"] in ("UPDATING", "VALID")
    doc = wait_status(batch, name, "VALID")
    assert doc["state"] == "DISABLED"
    assert doc["computeResources"]["maxvCpus"] == 32 and doc["computeResources"]["minvCpus"] == 2
    assert doc["computeResources"]["desiredvCpus"] == 2  # Batch-managed: follows the new floor
    assert doc["computeResources"]["subnets"] == ["subnet-1"]  # untouched fields stay
    assert doc["serviceRole"] == "arn:aws:iam::123456789012:role/Other"
    assert doc["updatePolicy"] == {"terminateJobsOnUpdate": True, "jobExecutionTimeoutMinutes": 30}
    batch.update_compute_environment(computeEnvironment=doc["computeEnvironmentArn"], state="ENABLED")
    assert wait_status(batch, name, "VALID")["state"] == "ENABLED"


def test_update_rejects(batch, unique):
    managed = make_ce(batch, unique)
    unmanaged = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=unmanaged, type="UNMANAGED", unmanagedvCpus=1)
    cases = [
        ({"computeEnvironment": managed, "unmanagedvCpus": 4}, "UNMANAGED"),
        ({"computeEnvironment": unmanaged, "computeResources": {"maxvCpus": 4}}, "MANAGED"),
        ({"computeEnvironment": managed, "computeResources": {"maxvCpus": 0, "minvCpus": 1}}, "minvCpus"),
        ({"computeEnvironment": managed, "computeResources": {"type": "FARGATE"}}, "cannot change"),
        ({"computeEnvironment": "does-not-exist", "state": "DISABLED"}, "does not exist"),
    ]
    for kwargs, words in cases:
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.update_compute_environment(**kwargs)
        assert words in client_error(exc), kwargs
    batch.update_compute_environment(computeEnvironment=unmanaged, unmanagedvCpus=7)
    assert wait_status(batch, unmanaged, "VALID")["unmanagedvCpus"] == 7


def test_delete_rules(batch, unique):
    name = make_ce(batch, unique)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_compute_environment(computeEnvironment=name)
    assert "ENABLED" in client_error(exc)
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue, priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": name}]
    )
    batch.update_compute_environment(computeEnvironment=name, state="DISABLED")
    wait_status(batch, name, "VALID")
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_compute_environment(computeEnvironment=name)
    message = client_error(exc)
    assert "JobQueue relationship" in message and queue in message
    # Disassociate by pointing the queue at another environment, then delete.
    other = make_ce(batch, unique)
    batch.update_job_queue(
        jobQueue=queue, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": other}]
    )
    batch.delete_compute_environment(computeEnvironment=name)
    doc = describe_ce(batch, name)
    assert doc is None or doc["status"] == "DELETING"
    wait_for(lambda: describe_ce(batch, name) is None, timeout=10, message="deleted")
    # The name is free again.
    batch.create_compute_environment(computeEnvironmentName=name, type="UNMANAGED")
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_compute_environment(computeEnvironment=unique("missing"))
    assert "does not exist" in client_error(exc)


def test_deleting_is_visible_then_gone(make_server):
    # Long enough that the CREATING/DELETING states are still there when the next call looks, even when a
    # loaded machine answers slowly (0.5 s was not).
    srv = make_server(env={"BATCHD_RESOURCE_CREATE_DELAY": "3"})
    batch = srv.client()
    batch.create_compute_environment(computeEnvironmentName="slow", type="UNMANAGED", state="DISABLED")
    assert describe_ce(batch, "slow")["status"] == "CREATING"
    wait_status(batch, "slow", "VALID")
    batch.delete_compute_environment(computeEnvironment="slow")
    doc = describe_ce(batch, "slow")
    assert doc["status"] == "DELETING"
    batch.delete_compute_environment(computeEnvironment="slow")  # repeating a delete is fine
    with pytest.raises(batch.exceptions.ClientException):
        batch.create_compute_environment(computeEnvironmentName="slow", type="UNMANAGED")
    with pytest.raises(batch.exceptions.ClientException):
        batch.update_compute_environment(computeEnvironment="slow", state="ENABLED")
    wait_for(lambda: describe_ce(batch, "slow") is None, message="gone")
    assert batch.describe_compute_environments()["computeEnvironments"] == []


def test_aws_cli(server, unique):
    name = unique("ce")
    out = server.aws(
        "batch",
        "create-compute-environment",
        "--compute-environment-name",
        name,
        "--type",
        "MANAGED",
        "--compute-resources",
        "type=EC2,maxvCpus=4,minvCpus=0,subnets=subnet-1,instanceRole=ecsInstanceRole",
        "--tags",
        "k=v",
    )
    assert out["computeEnvironmentName"] == name
    docs = server.aws("batch", "describe-compute-environments", "--compute-environments", name)
    doc = docs["computeEnvironments"][0]
    assert doc["computeResources"]["maxvCpus"] == 4 and doc["tags"] == {"k": "v"}
    err = server.aws("batch", "delete-compute-environment", "--compute-environment", name, check=False)
    assert "ClientException" in err
