"""Every operation of the installed botocore Batch model answers with success or a ClientException.

The parameters are generated from each input shape: once with only the required members ("minimal") and once
with every member filled in ("full"), so that no request a conforming client can send produces a 404, a 5xx, an
unknown error code or a dropped connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import Shape

from conftest import Server, wait_for

MODEL = botocore.session.get_session().get_service_model("batch")
OPERATIONS = sorted(MODEL.operation_names)
ARN = "arn:aws:batch:us-east-1:123456789012:job-queue/x"


def sample(shape: Shape, name: str, full: bool, depth: int = 0) -> object:
    """A plausible value for a shape: strings "x", numbers 1, one-element lists and maps, first enum values."""
    kind = shape.type_name
    if kind == "structure":
        members = (
            shape.members if full and depth < 8 else {m: shape.members[m] for m in shape.required_members}
        )
        return {m: sample(s, m, full, depth + 1) for m, s in members.items()}
    if kind == "list":
        return [sample(shape.member, name, full, depth + 1)]
    if kind == "map":
        return {"k": sample(shape.value, name, full, depth + 1)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        if name in ("resourceArn", "arn", "quotaShareArn") or name.endswith("Arn"):
            return ARN
        return "x" * max(1, int(shape.metadata.get("min", 1)))
    if kind in ("integer", "long"):
        return max(1, int(shape.metadata.get("min", 1)))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return False
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return 0
    raise AssertionError(f"no sample for {kind}")


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("allops")) / "data").start()
    yield srv
    srv.reap()


def call(srv: Server, op: str, params: dict) -> None:
    client = srv.client()
    try:
        getattr(client, botocore.xform_name(op))(**params)
    except ClientError as exc:
        err = exc.response["Error"]
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        assert err["Code"] == "ClientException", f"{op}: {status} {err}"
        assert status == 400, f"{op}: {status} {err}"
        assert err.get("Message"), f"{op}: ClientException without a message"


@pytest.mark.parametrize("op", OPERATIONS)
def test_minimal_parameters(private_server: Server, op: str) -> None:
    shape = MODEL.operation_model(op).input_shape
    call(private_server, op, sample(shape, op, full=False) if shape else {})


@pytest.mark.parametrize("op", OPERATIONS)
def test_full_parameters(private_server: Server, op: str) -> None:
    shape = MODEL.operation_model(op).input_shape
    call(private_server, op, sample(shape, op, full=True) if shape else {})


def test_model_is_the_one_documented() -> None:
    # docs/api-coverage.md lists these operations; a botocore upgrade that adds some must update it.
    assert len(OPERATIONS) == 48
    text = (Path(__file__).resolve().parent.parent / "docs" / "api-coverage.md").read_text()
    missing = [op for op in OPERATIONS if f"| {op} |" not in text]
    assert not missing, f"docs/api-coverage.md does not list {missing}"


def test_success_path_for_resource_operations(private_server: Server) -> None:
    """A realistic sequence through every resource operation, all succeeding."""
    b = private_server.client()
    ce = b.create_compute_environment(computeEnvironmentName="all-ce", type="UNMANAGED", unmanagedvCpus=1)
    sp = b.create_scheduling_policy(name="all-sp")
    q = b.create_job_queue(
        jobQueueName="all-q",
        priority=1,
        schedulingPolicyArn=sp["arn"],
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
    )
    jd = b.register_job_definition(
        jobDefinitionName="all-jd", type="container", containerProperties={"image": "x"}
    )
    b.describe_compute_environments()
    b.describe_job_queues()
    b.describe_job_definitions()
    b.describe_scheduling_policies(arns=[sp["arn"]])
    b.list_scheduling_policies()
    b.update_compute_environment(computeEnvironment="all-ce", state="DISABLED")
    b.update_job_queue(jobQueue="all-q", state="DISABLED")
    b.update_scheduling_policy(arn=sp["arn"], fairsharePolicy={"computeReservation": 1})
    for arn in (ce["computeEnvironmentArn"], q["jobQueueArn"], jd["jobDefinitionArn"], sp["arn"]):
        b.tag_resource(resourceArn=arn, tags={"a": "b"})
        assert b.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "b"}
        b.untag_resource(resourceArn=arn, tagKeys=["a"])
    b.deregister_job_definition(jobDefinition=jd["jobDefinitionArn"])
    b.delete_job_queue(jobQueue="all-q")
    wait_for(lambda: not b.describe_job_queues(jobQueues=["all-q"])["jobQueues"], message="queue deleted")
    b.delete_scheduling_policy(arn=sp["arn"])
    b.delete_compute_environment(computeEnvironment="all-ce")
