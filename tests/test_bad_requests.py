"""Bad requests over raw, unsigned HTTP against a real dev-mode server: each must be a clear 400 ClientException.

boto3 is not used for the bad cases because botocore would reject most of them on the client. A few good-path
checks at the end use boto3 to make sure validation does not reject valid input.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/q1"
JOB = {"jobName": "j1", "jobQueue": "q1", "jobDefinition": "jd:1"}
JOBDEF = {"jobDefinitionName": "jd", "type": "container"}
QUEUE = {"jobQueueName": "q1", "priority": 1}
VALIDATION = "1 validation error detected"


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    body: dict[str, Any] | list | str | bytes | None
    fragments: tuple[str, ...]
    method: str = "POST"


def submit(**extra: Any) -> dict[str, Any]:
    return {**JOB, **extra}


def job_without(member: str) -> dict[str, Any]:
    return {k: v for k, v in JOB.items() if k != member}


def retry(*entries: dict[str, Any], attempts: int = 2) -> dict[str, Any]:
    return submit(retryStrategy={"attempts": attempts, "evaluateOnExit": list(entries)})


def tags_path(arn: str, query: str = "") -> str:
    return "/v1/tags/" + quote(arn, safe="") + (f"?{query}" if query else "")


def fairshare(**policy: Any) -> dict[str, Any]:
    return {"name": "sp1", "fairsharePolicy": policy}


def state_action(seconds: int) -> dict[str, Any]:
    entry = {"reason": "too long", "state": "RUNNABLE", "maxTimeSeconds": seconds, "action": "CANCEL"}
    return {**QUEUE, "jobStateTimeLimitActions": [entry]}


ENV3 = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "AWS_BATCH_JOB_ID", "value": "x"}]

CASES = [
    # Missing / null / empty required members.
    Case(
        "submit-missing-jobName",
        "/v1/submitjob",
        job_without("jobName"),
        ("Value null at 'jobName'", "must not be null"),
    ),
    Case(
        "submit-missing-jobQueue",
        "/v1/submitjob",
        job_without("jobQueue"),
        ("'jobQueue'", "must not be null"),
    ),
    Case("submit-missing-jobDefinition", "/v1/submitjob", job_without("jobDefinition"), ("'jobDefinition'",)),
    Case("submit-null-jobQueue", "/v1/submitjob", submit(jobQueue=None), ("Value null at 'jobQueue'",)),
    Case("submit-empty-body", "/v1/submitjob", None, ("Value null at 'jobName'",)),
    Case(
        "cancel-empty-jobId",
        "/v1/canceljob",
        {"jobId": "", "reason": "r"},
        ("Value '' at 'jobId'", "must not be empty"),
    ),
    Case("cancel-missing-reason", "/v1/canceljob", {"jobId": "j"}, ("Value null at 'reason'",)),
    Case("terminate-missing-jobId", "/v1/terminatejob", {"reason": "r"}, ("Value null at 'jobId'",)),
    Case(
        "queue-missing-priority", "/v1/createjobqueue", {"jobQueueName": "q1"}, ("Value null at 'priority'",)
    ),
    Case(
        "queue-ce-order-missing-ce",
        "/v1/createjobqueue",
        {**QUEUE, "computeEnvironmentOrder": [{"order": 1}]},
        ("Value null at 'computeEnvironmentOrder[0].computeEnvironment'",),
    ),
    # Wrong JSON types.
    Case(
        "submit-jobName-int",
        "/v1/submitjob",
        submit(jobName=7),
        ("at 'jobName'", "must be a string, not an integer"),
    ),
    Case(
        "submit-array-size-string",
        "/v1/submitjob",
        submit(arrayProperties={"size": "3"}),
        ("Value '3' at 'arrayProperties.size'", "must be an integer, not a string"),
    ),
    Case(
        "submit-array-size-bool", "/v1/submitjob", submit(arrayProperties={"size": True}), ("not a boolean",)
    ),
    Case(
        "submit-vcpus-float",
        "/v1/submitjob",
        submit(containerOverrides={"vcpus": 1.5}),
        ("'containerOverrides.vcpus'",),
    ),
    Case(
        "submit-command-string",
        "/v1/submitjob",
        submit(containerOverrides={"command": "echo hi"}),
        ("at 'containerOverrides.command'", "must be an array, not a string"),
    ),
    Case(
        "submit-overrides-array",
        "/v1/submitjob",
        submit(containerOverrides=[1]),
        ("must be an object, not an array",),
    ),
    Case(
        "submit-parameter-int", "/v1/submitjob", submit(parameters={"n": 1}), ("Value 1 at 'parameters.n'",)
    ),
    Case(
        "submit-propagateTags-string",
        "/v1/submitjob",
        submit(propagateTags="yes"),
        ("at 'propagateTags'", "boolean"),
    ),
    Case("describejobs-jobs-string", "/v1/describejobs", {"jobs": "abc"}, ("at 'jobs'", "must be an array")),
    Case(
        "policy-weight-nan-string",
        "/v1/createschedulingpolicy",
        fairshare(shareDistribution=[{"shareIdentifier": "a", "weightFactor": "NaN"}]),
        ("'fairsharePolicy.shareDistribution[0].weightFactor'", "must be a number, not a string"),
    ),
    # Enums.
    Case(
        "queue-bad-state",
        "/v1/createjobqueue",
        {**QUEUE, "state": "FOO"},
        ("Value 'FOO' at 'state'", "[ENABLED, DISABLED]"),
    ),
    Case(
        "ce-bad-type",
        "/v1/createcomputeenvironment",
        {"computeEnvironmentName": "ce1", "type": "HYBRID"},
        ("'type'", "MANAGED"),
    ),
    Case(
        "jobdef-bad-type", "/v1/registerjobdefinition", {**JOBDEF, "type": "docker"}, ("'type'", "container")
    ),
    Case(
        "listjobs-bad-status",
        "/v1/listjobs",
        {"jobQueue": "q1", "jobStatus": "DONE"},
        ("'jobStatus'", "RUNNABLE"),
    ),
    Case(
        "submit-bad-dependency-type",
        "/v1/submitjob",
        submit(dependsOn=[{"jobId": "a"}, {"jobId": "b", "type": "ALL"}]),
        ("at 'dependsOn[1].type'", "N_TO_N"),
    ),
    Case(
        "retry-bad-action",
        "/v1/submitjob",
        retry({"action": "MAYBE"}),
        ("'retryStrategy.evaluateOnExit[0].action'",),
    ),
    # Out-of-range numbers and counts.
    Case(
        "array-size-1",
        "/v1/submitjob",
        submit(arrayProperties={"size": 1}),
        ("'arrayProperties.size'", "greater than or equal to 2"),
    ),
    Case(
        "array-size-10001",
        "/v1/submitjob",
        submit(arrayProperties={"size": 10001}),
        ("less than or equal to 10000",),
    ),
    Case(
        "depends-on-21",
        "/v1/submitjob",
        submit(dependsOn=[{"jobId": f"j{i}"} for i in range(21)]),
        ("at 'dependsOn'", "less than or equal to 20"),
    ),
    Case(
        "attempts-0",
        "/v1/submitjob",
        submit(retryStrategy={"attempts": 0}),
        ("'retryStrategy.attempts'", "greater than"),
    ),
    Case(
        "attempts-11",
        "/v1/registerjobdefinition",
        {**JOBDEF, "retryStrategy": {"attempts": 11}},
        ("less than or equal to 10",),
    ),
    Case(
        "evaluate-on-exit-6",
        "/v1/submitjob",
        retry(*[{"onExitCode": str(i), "action": "EXIT"} for i in range(6)]),
        ("at 'retryStrategy.evaluateOnExit'", "less than or equal to 5"),
    ),
    Case(
        "on-exit-code-letters",
        "/v1/submitjob",
        retry({"onExitCode": "1a", "action": "EXIT"}),
        ("'retryStrategy.evaluateOnExit[0].onExitCode'", "digits"),
    ),
    Case(
        "on-reason-bad-chars",
        "/v1/submitjob",
        retry({"onReason": "a*b", "action": "EXIT"}),
        ("evaluateOnExit[0].onReason",),
    ),
    Case(
        "on-status-reason-513",
        "/v1/submitjob",
        retry({"onStatusReason": "a" * 513, "action": "EXIT"}),
        ("(513 characters)", "512"),
    ),
    Case(
        "timeout-0",
        "/v1/submitjob",
        submit(timeout={"attemptDurationSeconds": 0}),
        ("Value 0 at 'timeout.attemptDurationSeconds'", "greater than or equal to"),
    ),
    Case(
        "priority-override-10000",
        "/v1/submitjob",
        submit(schedulingPriorityOverride=10000),
        ("'schedulingPriorityOverride'", "9999"),
    ),
    Case(
        "priority-override-negative",
        "/v1/submitjob",
        submit(schedulingPriorityOverride=-1),
        ("greater than or equal to 0",),
    ),
    Case(
        "share-identifier-256",
        "/v1/submitjob",
        submit(shareIdentifier="s" * 256),
        ("'shareIdentifier'", "255"),
    ),
    Case(
        "jobdef-priority-10000",
        "/v1/registerjobdefinition",
        {**JOBDEF, "schedulingPriority": 10000},
        ("'schedulingPriority'",),
    ),
    Case(
        "queue-priority-1001",
        "/v1/createjobqueue",
        {**QUEUE, "priority": 1001},
        ("Value 1001 at 'priority'", "1000"),
    ),
    Case(
        "update-queue-priority-negative",
        "/v1/updatejobqueue",
        {"jobQueue": "q1", "priority": -1},
        ("'priority'",),
    ),
    Case(
        "queue-4-compute-environments",
        "/v1/createjobqueue",
        {
            **QUEUE,
            "computeEnvironmentOrder": [{"order": i, "computeEnvironment": f"ce{i}"} for i in range(4)],
        },
        ("at 'computeEnvironmentOrder'", "less than or equal to 3"),
    ),
    Case(
        "state-limit-0",
        "/v1/createjobqueue",
        state_action(0),
        ("'jobStateTimeLimitActions[0].maxTimeSeconds'",),
    ),
    Case("state-limit-86401", "/v1/createjobqueue", state_action(86401), ("less than or equal to 86400",)),
    Case(
        "share-decay-too-long",
        "/v1/createschedulingpolicy",
        fairshare(shareDecaySeconds=604801),
        ("'fairsharePolicy.shareDecaySeconds'",),
    ),
    Case(
        "compute-reservation-100",
        "/v1/createschedulingpolicy",
        fairshare(computeReservation=100),
        ("'fairsharePolicy.computeReservation'", "99"),
    ),
    Case(
        "weight-factor-0",
        "/v1/createschedulingpolicy",
        fairshare(shareDistribution=[{"shareIdentifier": "a", "weightFactor": 0}]),
        ("weightFactor", "greater than or equal to 0.0001"),
    ),
    Case(
        "cancel-reason-1025", "/v1/canceljob", {"jobId": "j", "reason": "r" * 1025}, ("at 'reason'", "1024")
    ),
    Case(
        "cancel-jobs-51",
        "/v1/canceljobs",
        {"jobs": ["j"] * 51, "reason": "r"},
        ("at 'jobs'", "less than or equal to 50"),
    ),
    Case("describe-jobs-101", "/v1/describejobs", {"jobs": ["j"] * 101}, ("[...101 items] at 'jobs'", "100")),
    Case("describe-queues-max-0", "/v1/describejobqueues", {"maxResults": 0}, ("Value 0 at 'maxResults'",)),
    Case(
        "describe-ces-101",
        "/v1/describecomputeenvironments",
        {"computeEnvironments": ["c"] * 101},
        ("'computeEnvironments'",),
    ),
    Case(
        "describe-jobdefs-max-101", "/v1/describejobdefinitions", {"maxResults": 101}, ("'maxResults'", "100")
    ),
    Case(
        "listjobs-max-1001", "/v1/listjobs", {"jobQueue": "q1", "maxResults": 1001}, ("'maxResults'", "1000")
    ),
    # Names.
    Case(
        "job-name-leading-hyphen",
        "/v1/submitjob",
        submit(jobName="-job"),
        ("Value '-job' at 'jobName'", "start with a letter or number"),
    ),
    Case(
        "job-name-129", "/v1/submitjob", submit(jobName="j" * 129), ("'jobName'", "less than or equal to 128")
    ),
    Case(
        "queue-name-space",
        "/v1/createjobqueue",
        {**QUEUE, "jobQueueName": "my queue"},
        ("Value 'my queue' at 'jobQueueName'",),
    ),
    Case(
        "ce-name-129",
        "/v1/createcomputeenvironment",
        {"computeEnvironmentName": "c" * 129, "type": "MANAGED"},
        ("'computeEnvironmentName'",),
    ),
    Case(
        "jobdef-name-slash",
        "/v1/registerjobdefinition",
        {**JOBDEF, "jobDefinitionName": "a/b"},
        ("'jobDefinitionName'",),
    ),
    Case(
        "policy-name-dot", "/v1/createschedulingpolicy", {"name": "bad.name"}, ("Value 'bad.name' at 'name'",)
    ),
    # Environment and tags.
    Case(
        "override-env-reserved",
        "/v1/submitjob",
        submit(containerOverrides={"environment": ENV3}),
        ("Value 'AWS_BATCH_JOB_ID' at 'containerOverrides.environment[2].name'", "AWS_BATCH"),
    ),
    Case(
        "jobdef-env-reserved",
        "/v1/registerjobdefinition",
        {**JOBDEF, "containerProperties": {"image": "busybox", "environment": ENV3}},
        ("'containerProperties.environment[2].name'",),
    ),
    Case(
        "tags-aws-prefix",
        "/v1/submitjob",
        submit(tags={"aws:owner": "me"}),
        ("Value 'aws:owner' at 'tags'", "Map keys must not start with 'aws:'"),
    ),
    Case(
        "tags-51",
        "/v1/createjobqueue",
        {**QUEUE, "tags": {f"k{i}": "v" for i in range(51)}},
        ("at 'tags'", "50"),
    ),
    Case("tag-value-257", "/v1/submitjob", submit(tags={"k": "v" * 257}), ("at 'tags.k'", "256")),
    Case("tag-resource-aws-key", tags_path(QUEUE_ARN), {"tags": {"AWS:x": "1"}}, ("at 'tags'", "aws:")),
    Case("untag-missing-keys", tags_path(QUEUE_ARN), None, ("Value null at 'tagKeys'",), method="DELETE"),
    Case(
        "untag-aws-key",
        tags_path(QUEUE_ARN, "tagKeys=a&tagKeys=aws%3Ab"),
        None,
        ("Value 'aws:b' at 'tagKeys[1]'",),
        method="DELETE",
    ),
    # ARNs in the tag path.
    Case(
        "tags-arn-wrong-type",
        tags_path(f"arn:aws:batch:us-east-1:{ACCOUNT}:jobqueue/q1"),
        None,
        ("at 'resourceArn'", "AWS Batch resource ARN", "jobqueue/q1"),
        method="GET",
    ),
    Case("tags-not-an-arn", tags_path("q1"), None, ("Value 'q1' at 'resourceArn'",), method="GET"),
    Case(
        "tags-arn-bad-account",
        tags_path("arn:aws:batch:us-east-1:42:job-queue/q1"),
        None,
        ("'resourceArn'",),
        method="GET",
    ),
    Case(
        "tags-arn-other-service",
        tags_path("arn:aws:ecs:us-east-1:123456789012:cluster/c"),
        None,
        ("'resourceArn'",),
        method="GET",
    ),
    Case(
        "tags-arn-child-job",
        tags_path(f"arn:aws:batch:us-east-1:{ACCOUNT}:job/abc:3"),
        {"tags": {"a": "b"}},
        ("not supported for child jobs",),
    ),
    # Bodies and routing (app.py's checks, which must still be clean 400s).
    Case("malformed-json", "/v1/submitjob", b'{"jobName": ', ("not valid JSON",)),
    Case("invalid-utf8", "/v1/submitjob", b'{"jobName": "\xff"}', ("not valid JSON",)),
    Case("json-array-body", "/v1/submitjob", [JOB], ("must be a JSON object", "list")),
    Case("json-string-body", "/v1/describejobs", "jobs", ("must be a JSON object", "str")),
    Case(
        "submit-over-30KiB",
        "/v1/submitjob",
        submit(parameters={"blob": "x" * (31 * 1024)}),
        ("SubmitJob request body", "30720"),
    ),
    Case(
        "jobdef-over-24KiB",
        "/v1/registerjobdefinition",
        {**JOBDEF, "parameters": {"b": "x" * (25 * 1024)}},
        ("24576",),
    ),
    Case("body-over-256KiB", "/v1/describejobs", b" " * (257 * 1024), ("too large", "262144")),
    Case("unknown-path", "/v1/submitjobs", JOB, ("Unknown path /v1/submitjobs",)),
    # Decoded before any handler (api/decode.py): entries need their name, amounts are bounded decimals, numbers
    # in text fit 64 bits, and no string holds U+0000.
    Case(
        "submit-env-entry-without-name",
        "/v1/submitjob",
        submit(containerOverrides={"environment": [{"value": "x"}]}),
        ("Value null at 'containerOverrides.environment[0].name'", "must not be null"),
    ),
    Case(
        "submit-memory-1e30",
        "/v1/submitjob",
        submit(containerOverrides={"resourceRequirements": [{"type": "MEMORY", "value": "1e30"}]}),
        ("Value '1e30' at 'containerOverrides.resourceRequirements[0].value'", "decimal number from 0 to"),
    ),
    Case(
        "jobdef-vcpu-inf",
        "/v1/registerjobdefinition",
        {**JOBDEF, "containerProperties": {"image": "i", "resourceRequirements": [{"type": "VCPU", "value": "inf"}]}},
        ("Value 'inf' at 'containerProperties.resourceRequirements[0].value'",),
    ),
    Case(
        "listjobs-after-created-25-digits",
        "/v1/listjobs",
        {"jobQueue": "q1", "filters": [{"name": "AFTER_CREATED_AT", "values": ["1" * 25]}]},
        ("Filter AFTER_CREATED_AT", "must be an integer"),
    ),
    Case(
        "submit-parameter-nul",
        "/v1/submitjob",
        submit(parameters={"a": "x\u0000"}),
        ("at 'parameters.a'", "must not contain the NUL character"),
    ),
    Case(
        "wrong-method", "/v1/submitjob", None, ("Method GET is not allowed on /v1/submitjob",), method="GET"
    ),
]


def encode(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def send(url: str, method: str, path: str, body: bytes, headers: dict[str, str] | None = None):
    """One raw, unsigned HTTP request; returns (status, headers, body bytes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        try:
            conn.request(
                method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})}
            )
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer an oversized body before reading it all; the answer is still there
        resp = conn.getresponse()
        return resp.status, resp, resp.read()
    finally:
        conn.close()


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request(server, case: Case) -> None:
    status, resp, raw = send(server.url, case.method, case.path, encode(case.body))
    assert status == 400, raw
    assert resp.getheader("x-amzn-ErrorType") == "ClientException"
    assert resp.getheader("x-amzn-RequestId")
    assert resp.getheader("Content-Type", "").startswith("application/json")
    payload = json.loads(raw)
    assert payload["__type"] == "ClientException"
    for fragment in case.fragments:
        assert fragment in payload["message"], f"{fragment!r} not in {payload['message']!r}"


def test_unsigned_and_dev_signed_requests_get_the_same_validation_error(server) -> None:
    # Dev mode accepts requests without Authorization; a bad body must still be a 400, never a 500.
    body = encode(submit(arrayProperties={"size": 0}))
    fake_auth = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDDEV/20260101/us-east-1/batch/aws4_request, "
        "SignedHeaders=host, Signature=00"
    }
    for headers in ({}, fake_auth):
        status, resp, raw = send(server.url, "POST", "/v1/submitjob", body, headers)
        assert status == 400
        assert "'arrayProperties.size'" in json.loads(raw)["message"]


def test_oversized_body_refused_from_content_length_alone(server) -> None:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", "/v1/submitjob")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10 * 1024 * 1024))
        conn.endheaders()  # no body sent at all
        resp = conn.getresponse()
        assert resp.status == 400
        assert "too large" in json.loads(resp.read())["message"]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- good paths (boto3)


def _not_a_validation_error(call) -> None:
    """The call may fail in the handler (missing queue, not implemented...), but not in validation."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        message = exc.response["Error"].get("Message", "")
        assert VALIDATION not in message, message
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] < 500, message


def test_submit_job_with_every_common_optional_member(batch, unique) -> None:
    _not_a_validation_error(
        lambda: batch.submit_job(
            jobName=unique("Good"),
            jobQueue=f"arn:aws:batch:us-east-1:{ACCOUNT}:job-queue/{unique('missing')}",
            jobDefinition="missing-def:1",
            shareIdentifier="team_a-1",
            schedulingPriorityOverride=9999,
            arrayProperties={"size": 10000},
            dependsOn=[{"jobId": f"{i}", "type": "N_TO_N"} for i in range(19)] + [{"type": "SEQUENTIAL"}],
            parameters={"in": "s3://b/k", "empty": ""},
            containerOverrides={
                "vcpus": 2,
                "memory": 2048,
                "command": ["echo", "Ref::in"],
                "instanceType": "m5.large",
                "environment": [{"name": "MY_AWS_BATCH", "value": "1"}, {"name": "EMPTY"}],
                "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "GPU", "value": "1"}],
            },
            retryStrategy={
                "attempts": 10,
                "evaluateOnExit": [
                    {"onExitCode": "137", "action": "retry"},
                    {"onStatusReason": "Host EC2*", "action": "RETRY"},
                    {"onReason": "CannotPullContainerError:*", "action": "exit"},
                    {"onExitCode": "*", "onReason": "Out of memory", "action": "EXIT"},
                    {"onStatusReason": "*", "action": "RETRY"},
                ],
            },
            propagateTags=True,
            timeout={"attemptDurationSeconds": 60},
            tags={f"k{i}": "v" * 256 for i in range(49)} | {"k" * 128: ""},
        )
    )


def test_register_job_definition_with_common_members(batch, unique) -> None:
    _not_a_validation_error(
        lambda: batch.register_job_definition(
            jobDefinitionName=unique("jd"),
            type="container",
            parameters={"a": "b"},
            schedulingPriority=0,
            containerProperties={
                "image": "busybox",
                "command": ["sh", "-c", "echo hi"],
                "environment": [{"name": "X", "value": "1"}],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}],
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
            },
            retryStrategy={"attempts": 1},
            propagateTags=False,
            timeout={"attemptDurationSeconds": 3600},
            tags={"team": "x"},
            platformCapabilities=["EC2"],
        )
    )


def test_queue_and_policy_requests_at_the_limits(batch, unique) -> None:
    policy = {
        "shareDecaySeconds": 604800,
        "computeReservation": 99,
        "shareDistribution": [
            {"shareIdentifier": "a*", "weightFactor": 0.0001},
            {"shareIdentifier": "b", "weightFactor": 999.9999},
        ],
    }
    _not_a_validation_error(lambda: batch.create_scheduling_policy(name=unique("sp"), fairsharePolicy=policy))
    _not_a_validation_error(
        lambda: batch.create_job_queue(
            jobQueueName=unique("q"),
            priority=1000,
            state="DISABLED",
            computeEnvironmentOrder=[{"order": i, "computeEnvironment": f"missing-ce-{i}"} for i in range(3)],
            jobStateTimeLimitActions=[
                {"reason": "stuck", "state": "RUNNABLE", "maxTimeSeconds": 86400, "action": "CANCEL"}
            ],
        )
    )
    _not_a_validation_error(lambda: batch.describe_jobs(jobs=[f"missing-{i}" for i in range(100)]))
    _not_a_validation_error(
        lambda: batch.list_jobs(jobQueue="missing", jobStatus="SUCCEEDED", maxResults=1000)
    )
    _not_a_validation_error(lambda: batch.list_tags_for_resource(resourceArn=QUEUE_ARN))
