"""Job definitions: revisions, validation, describe filters and pages, deregistration, and the store lookups."""

from __future__ import annotations

import json

import pytest

from batchd.store import resources as store
from batchd.store.db import Database

PREFIX = "arn:aws:batch:us-east-1:123456789012:job-definition"
CONTAINER = {
    "image": "busybox",
    "command": ["echo", "Ref::msg"],
    "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
}


def client_error(excinfo) -> str:
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Message"]


def register(batch, name: str, **kw) -> dict:
    args = {"jobDefinitionName": name, "type": "container", "containerProperties": CONTAINER, **kw}
    out = batch.register_job_definition(**{k: v for k, v in args.items() if v is not None})
    out.pop("ResponseMetadata")
    return out


def describe(batch, **kw) -> list[dict]:
    return batch.describe_job_definitions(**kw)["jobDefinitions"]


def test_register_echoes_everything(batch, unique):
    name = unique("jd")
    args = dict(
        parameters={"msg": "hi"},
        retryStrategy={
            "attempts": 3,
            "evaluateOnExit": [{"onExitCode": "1*", "action": "retry"}, {"onReason": "*", "action": "exit"}],
        },
        timeout={"attemptDurationSeconds": 120},
        propagateTags=True,
        tags={"owner": "me"},
        schedulingPriority=5,
        platformCapabilities=["EC2"],
    )
    out = register(batch, name, **args)
    assert out == {"jobDefinitionName": name, "jobDefinitionArn": f"{PREFIX}/{name}:1", "revision": 1}
    (doc,) = describe(batch, jobDefinitions=[f"{name}:1"])
    assert doc == {
        "jobDefinitionName": name,
        "jobDefinitionArn": f"{PREFIX}/{name}:1",
        "revision": 1,
        "status": "ACTIVE",
        "type": "container",
        "schedulingPriority": 5,
        "parameters": {"msg": "hi"},
        "retryStrategy": args["retryStrategy"],
        "containerProperties": {
            **CONTAINER,
            "volumes": [],
            "environment": [],
            "mountPoints": [],
            "ulimits": [],
            "secrets": [],
        },
        "timeout": {"attemptDurationSeconds": 120},
        "tags": {"owner": "me"},
        "propagateTags": True,
        "platformCapabilities": ["EC2"],
        "containerOrchestrationType": "ECS",
    }


def test_minimal_defaults_and_legacy_fields(batch, unique):
    name = unique("jd")
    register(batch, name, containerProperties={"image": "busybox", "vcpus": 2, "memory": 256})
    (doc,) = describe(batch, jobDefinitionName=name)
    assert doc["containerProperties"]["vcpus"] == 2 and doc["containerProperties"]["memory"] == 256
    assert doc["parameters"] == {} and doc["tags"] == {} and "platformCapabilities" not in doc
    assert doc["containerProperties"]["command"] == []
    assert "retryStrategy" not in doc and "timeout" not in doc


def test_revisions_are_never_reused(batch, unique):
    name = unique("jd")
    assert [register(batch, name)["revision"] for _ in range(3)] == [1, 2, 3]
    batch.deregister_job_definition(jobDefinition=f"{name}:3")
    batch.deregister_job_definition(jobDefinition=f"{PREFIX}/{name}:2")
    assert register(batch, name)["revision"] == 4
    statuses = {d["revision"]: d["status"] for d in describe(batch, jobDefinitionName=name)}
    assert statuses == {1: "ACTIVE", 2: "INACTIVE", 3: "INACTIVE", 4: "ACTIVE"}
    assert [d["revision"] for d in describe(batch, jobDefinitionName=name, status="INACTIVE")] == [2, 3]
    assert [d["revision"] for d in describe(batch, jobDefinitionName=name, status="ACTIVE")] == [1, 4]
    batch.deregister_job_definition(jobDefinition=f"{name}:2")  # again: still fine


def test_describe_by_list(batch, unique):
    a, b = unique("jd"), unique("jd")
    register(batch, a)
    register(batch, a)
    register(batch, b)
    got = describe(batch, jobDefinitions=[f"{a}:2", f"{PREFIX}/{b}:1", f"{a}:9", "nope:1", f"{a}:2"])
    assert [(d["jobDefinitionName"], d["revision"]) for d in got] == [(a, 2), (b, 1)]
    # batchd's choice: a bare name (or ARN without revision) lists every revision.
    assert [d["revision"] for d in describe(batch, jobDefinitions=[a])] == [1, 2]
    foreign = f"arn:aws:batch:us-east-1:999999999999:job-definition/{a}:1"
    assert describe(batch, jobDefinitions=[foreign]) == []
    with pytest.raises(batch.exceptions.ClientException) as exc:
        describe(batch, jobDefinitions=[f"{a}:1"], jobDefinitionName=a)
    assert "other parameters" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        describe(batch, jobDefinitions=[f"{a}:1"], status="ACTIVE")
    assert "other parameters" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException):
        describe(batch, jobDefinitions=[f"{a}:{i}" for i in range(101)])


def test_describe_pages(make_server):
    srv = make_server()
    batch = srv.client()
    for i in range(5):
        register(batch, f"d{i % 2}")
    pages = list(batch.get_paginator("describe_job_definitions").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["jobDefinitions"]) for p in pages] == [2, 2, 1]
    page = batch.describe_job_definitions(jobDefinitionName="d0", maxResults=1)
    assert page["jobDefinitions"][0]["revision"] == 1
    page = batch.describe_job_definitions(jobDefinitionName="d0", maxResults=1, nextToken=page["nextToken"])
    assert page["jobDefinitions"][0]["revision"] == 2
    rest = batch.describe_job_definitions(jobDefinitionName="d0", maxResults=1, nextToken=page["nextToken"])
    assert rest["jobDefinitions"][0]["revision"] == 3 and "nextToken" not in rest
    for bad in ({"status": "DELETED"}, {"maxResults": 0}, {"maxResults": 101}, {"nextToken": "x"}):
        with pytest.raises(batch.exceptions.ClientException):
            batch.describe_job_definitions(**bad)
    assert batch.describe_job_definitions(jobDefinitionName="nothing")["jobDefinitions"] == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"containerProperties": {"command": ["x"]}}, "image"),
        (
            {"containerProperties": {"image": "b", "environment": [{"name": "AWS_BATCH_X", "value": "1"}]}},
            "AWS_BATCH",
        ),
        (
            {"containerProperties": {"image": "b", "resourceRequirements": [{"type": "VCPU", "value": "0"}]}},
            "VCPU",
        ),
        (
            {
                "containerProperties": {
                    "image": "b",
                    "resourceRequirements": [{"type": "VCPU", "value": "1.5"}],
                }
            },
            "VCPU",
        ),
        (
            {
                "containerProperties": {
                    "image": "b",
                    "resourceRequirements": [{"type": "MEMORY", "value": "2"}],
                }
            },
            "MEMORY",
        ),
        (
            {
                "containerProperties": {
                    "image": "b",
                    "resourceRequirements": [{"type": "MEMORY", "value": "lots"}],
                }
            },
            "MEMORY",
        ),
        (
            {"containerProperties": {"image": "b", "resourceRequirements": [{"type": "GPU", "value": "-1"}]}},
            "GPU",
        ),
        (
            {
                "containerProperties": {
                    "image": "b",
                    "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "VCPU", "value": "2"}],
                }
            },
            "more than once",
        ),
        ({"containerProperties": {"image": "b", "memory": 2}}, "memory"),
        ({"containerProperties": {"image": "b", "vcpus": 0}}, "vcpus"),
        (
            {
                "platformCapabilities": ["FARGATE"],
                "containerProperties": {
                    "image": "b",
                    "resourceRequirements": [{"type": "VCPU", "value": "3"}],
                },
            },
            "Fargate",
        ),
        ({"platformCapabilities": ["FARGATE"], "containerProperties": {"image": "b", "vcpus": 1}}, "Fargate"),
        (
            {
                "platformCapabilities": ["FARGATE"],
                "containerProperties": {
                    "image": "b",
                    "resourceRequirements": [{"type": "GPU", "value": "1"}],
                },
            },
            "GPU",
        ),
        ({"retryStrategy": {"attempts": 11}}, "attempts"),
        ({"retryStrategy": {"evaluateOnExit": [{"action": "EXIT", "onExitCode": "1"}]}}, "attempts"),
        (
            {"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onExitCode": "a*"}]}},
            "onExitCode",
        ),
        (
            {"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "EXIT", "onReason": "a*b"}]}},
            "onReason",
        ),
        ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "MAYBE"}]}}, "MAYBE"),
        ({"timeout": {"attemptDurationSeconds": 0}}, "attemptDurationSeconds"),
        ({"schedulingPriority": 10000}, "schedulingPriority"),
        ({"tags": {"aws:x": "y"}}, "aws:"),
        (
            {"nodeProperties": {"numNodes": 1, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0"}]}},
            "exactly one",
        ),
    ],
)
def test_register_rejects(batch, unique, kwargs, words):
    args = {
        "jobDefinitionName": unique("jd"),
        "type": "container",
        "containerProperties": CONTAINER,
        **kwargs,
    }
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.register_job_definition(**args)
    assert words in client_error(exc)


def test_fargate_values_accepted(batch, unique):
    name = unique("jd")
    register(
        batch,
        name,
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "b",
            "resourceRequirements": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
            "networkConfiguration": {"assignPublicIp": "ENABLED"},
            "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
        },
    )
    (doc,) = describe(batch, jobDefinitions=[f"{name}:1"])
    assert doc["platformCapabilities"] == ["FARGATE"]
    assert doc["containerProperties"]["networkConfiguration"] == {"assignPublicIp": "ENABLED"}


def test_multinode(batch, unique):
    name = unique("jd")
    node = {"image": "busybox", "command": ["hostname"], "vcpus": 1, "memory": 64}
    props = {
        "numNodes": 3,
        "mainNode": 0,
        "nodeRangeProperties": [
            {"targetNodes": "0", "container": node},
            {"targetNodes": "1:", "container": node},
        ],
    }
    register(batch, name, type="multinode", containerProperties=None, nodeProperties=props)
    (doc,) = describe(batch, jobDefinitions=[f"{name}:1"])
    assert doc["type"] == "multinode" and doc["nodeProperties"]["numNodes"] == 3
    assert doc["nodeProperties"]["nodeRangeProperties"][1]["container"]["command"] == ["hostname"]
    bad = [
        (
            {
                "numNodes": 2,
                "mainNode": 2,
                "nodeRangeProperties": [{"targetNodes": "0:1", "container": node}],
            },
            "mainNode",
        ),
        (
            {
                "numNodes": 3,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0:1", "container": node}],
            },
            "cover",
        ),
        (
            {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0:5", "container": node}],
            },
            "outside",
        ),
        ({"numNodes": 2, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:1"}]}, "container"),
        (
            {
                "numNodes": 2,
                "mainNode": 0,
                "nodeRangeProperties": [{"targetNodes": "0:1", "container": {"vcpus": 1}}],
            },
            "image",
        ),
    ]
    for np_, words in bad:
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.register_job_definition(jobDefinitionName=name, type="multinode", nodeProperties=np_)
        assert words in client_error(exc), np_
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.register_job_definition(jobDefinitionName=name, type="multinode")
    assert "nodeProperties" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.register_job_definition(
            jobDefinitionName=name, type="multinode", nodeProperties=props, platformCapabilities=["FARGATE"]
        )
    assert "Fargate" in client_error(exc)


def test_ecs_and_eks_properties(batch, unique):
    ecs_name, eks_name = unique("jd"), unique("jd")
    ecs = {"taskProperties": [{"containers": [{"name": "main", "image": "busybox", "essential": True}]}]}
    register(batch, ecs_name, containerProperties=None, ecsProperties=ecs)
    (doc,) = describe(batch, jobDefinitions=[f"{ecs_name}:1"])
    assert doc["ecsProperties"] == ecs and "containerProperties" not in doc
    eks = {"podProperties": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}
    register(batch, eks_name, containerProperties=None, eksProperties=eks)
    (doc,) = describe(batch, jobDefinitions=[f"{eks_name}:1"])
    # With the lists AWS always returns (tests/test_describe_fidelity.py has each of them).
    assert doc["eksProperties"]["podProperties"]["containers"][0]["command"] == ["true"]
    assert doc["eksProperties"]["podProperties"]["containers"][0]["args"] == []
    assert doc["containerOrchestrationType"] == "EKS"
    with pytest.raises(batch.exceptions.ClientException) as exc:
        register(batch, ecs_name, ecsProperties=ecs)  # with containerProperties too
    assert "exactly one" in client_error(exc)
    bad_env = {
        "taskProperties": [{"containers": [{"image": "b", "environment": [{"name": "AWS_BATCH_JOB_ID"}]}]}]
    }
    with pytest.raises(batch.exceptions.ClientException) as exc:
        register(batch, ecs_name, containerProperties=None, ecsProperties=bad_env)
    assert "AWS_BATCH" in client_error(exc)


def test_deregister_errors(batch, unique):
    name = unique("jd")
    register(batch, name)
    for ref, words in [
        (name, "name:revision"),
        (f"{name}:2", "does not exist"),
        ("x:y:z", "name:revision"),
        (f"arn:aws:batch:us-east-1:999999999999:job-definition/{name}:1", "name:revision"),
    ]:
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.deregister_job_definition(jobDefinition=ref)
        assert words in client_error(exc), ref


def test_aws_cli(server, unique):
    name = unique("jd")
    out = server.aws(
        "batch",
        "register-job-definition",
        "--job-definition-name",
        name,
        "--type",
        "container",
        "--container-properties",
        json.dumps(CONTAINER),
        "--parameters",
        "msg=hello",
    )
    assert out["revision"] == 1
    got = server.aws("batch", "describe-job-definitions", "--job-definition-name", name, "--status", "ACTIVE")
    assert got["jobDefinitions"][0]["parameters"] == {"msg": "hello"}
    server.aws("batch", "deregister-job-definition", "--job-definition", f"{name}:1")
    got = server.aws("batch", "describe-job-definitions", "--job-definitions", f"{name}:1")
    assert got["jobDefinitions"][0]["status"] == "INACTIVE"


def test_store_lookups(tmp_path):
    """The functions SubmitJob uses, exercised directly on a store."""
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    db.migrate()
    acct, region = "123456789012", "us-east-1"

    def add(name: str, status: str = "ACTIVE") -> None:
        with db.tx() as conn:
            rev = store.next_job_definition_revision(conn, acct, region, name)
            arn = f"{PREFIX}/{name}:{rev}"
            doc = {"jobDefinitionName": name, "jobDefinitionArn": arn, "revision": rev, "status": status}
            store.insert_job_definition(conn, acct, region, name, rev, arn, doc)

    add("a")
    add("a")
    add("a", "INACTIVE")
    conn = db.conn

    def rev(ref: str, **kw) -> int | None:
        doc = store.find_job_definition(conn, acct, region, ref, **kw)
        return None if doc is None else doc["revision"]

    assert rev("a") == 2  # latest ACTIVE, not the latest
    assert rev("a:3") == 3 and rev("a:3", active_only=True) is None
    assert rev(f"{PREFIX}/a") == 2 and rev(f"{PREFIX}/a:1") == 1
    assert store.find_active_job_definition(conn, acct, region, "a:1")["revision"] == 1
    assert rev("a:9") is None and rev("b") is None and rev("") is None and rev("a:x") is None
    assert rev("arn:aws:batch:us-west-2:123456789012:job-definition/a:1") is None  # another region
    assert store.find_job_definition(conn, "999999999999", region, "a") is None
    with db.tx() as w:
        for d in store.job_definition_revisions(w, acct, region, "a")[:2]:
            store.update_job_definition_data(w, d["jobDefinitionArn"], {**d, "status": "INACTIVE"})
    assert rev("a") is None and rev("a:1") == 1
    db.close()
