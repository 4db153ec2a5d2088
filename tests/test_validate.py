"""Unit tests for batchd.api.validate: every rule family, called directly (no server)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from botocore.model import ShapeResolver

from batchd.api import model, validate
from batchd.api.errors import ClientException
from batchd.api.validate import LIMITS, validate_request

REPO = Path(__file__).resolve().parent.parent
ARN_Q = "arn:aws:batch:us-east-1:123456789012:job-queue/q1"


def shape_of(op: str):
    return model.service_model().operation_model(op).input_shape


def ok(op: str, params: dict[str, Any]) -> None:
    validate_request(op, shape_of(op), params)


def bad(op: str, params: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ClientException) as info:
        validate_request(op, shape_of(op), params)
    message = info.value.message
    assert message.startswith("1 validation error detected: Value "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(autouse=True)
def _restore_settings():
    # Start from AWS's minimums: an in-process app built earlier in this worker (tests/inproc.py) lowers them.
    saved = dict(validate._SETTINGS)
    validate.set_min_attempt_duration(60)
    validate.set_min_state_time_limit(600)
    yield
    validate._SETTINGS.update(saved)


JOB = {"jobName": "j1", "jobQueue": "q", "jobDefinition": "jd:1"}
JOBDEF = {"jobDefinitionName": "jd", "type": "container"}
QUEUE = {"jobQueueName": "q", "priority": 1}


def job(**extra: Any) -> dict[str, Any]:
    return {**JOB, **extra}


# ---------------------------------------------------------------------------------------------- required


@pytest.mark.parametrize("member", ["jobName", "jobQueue", "jobDefinition"])
def test_required_member_missing(member: str) -> None:
    params = dict(JOB)
    del params[member]
    bad("SubmitJob", params, f"Value null at '{member}'", "must not be null")


def test_required_member_null() -> None:
    bad("SubmitJob", job(jobQueue=None), "Value null at 'jobQueue'", "must not be null")


def test_required_string_empty() -> None:
    bad("CancelJob", {"jobId": "", "reason": "r"}, "Value '' at 'jobId'", "must not be empty")
    bad("CancelJob", {"jobId": "j", "reason": ""}, "at 'reason'", "must not be empty")


def test_required_nested_in_list_item() -> None:
    params = {**QUEUE, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}, {"order": 2}]}
    bad("CreateJobQueue", params, "Value null at 'computeEnvironmentOrder[1].computeEnvironment'")


def test_required_enum_member_empty() -> None:
    bad("RegisterJobDefinition", {**JOBDEF, "type": ""}, "at 'type'", "must not be empty")


def test_optional_null_and_unknown_members_are_ignored() -> None:
    ok("SubmitJob", job(shareIdentifier=None, timeout=None, someFutureMember={"x": [1, 2]}))
    ok("SubmitJob", job(containerOverrides={"command": ["a"], "newThing": 5}))


def test_optional_null_members_are_removed_at_every_depth() -> None:
    params = job(timeout=None, containerOverrides={"command": None, "environment": [{"name": "A", "value": None}],
                                                   "resourceRequirements": [{"type": "VCPU", "value": "1"}]},
                 retryStrategy={"attempts": 1, "evaluateOnExit": None}, someFutureMember=None)
    ok("SubmitJob", params)
    assert params == job(containerOverrides={"environment": [{"name": "A"}],
                                             "resourceRequirements": [{"type": "VCPU", "value": "1"}]},
                         retryStrategy={"attempts": 1}, someFutureMember=None)  # unknown members: untouched
    compute = {"type": "EC2", "minvCpus": None, "maxvCpus": 4}
    ok("CreateComputeEnvironment", {"computeEnvironmentName": "c", "type": "MANAGED", "computeResources": compute})
    assert compute == {"type": "EC2", "maxvCpus": 4}


def test_environment_entries_need_a_name() -> None:
    for entries in ([{}], [{"value": "x"}], [{"name": None}]):
        bad("SubmitJob", job(containerOverrides={"environment": entries}),
            "Value null at 'containerOverrides.environment[0].name'", "must not be null")
        bad("RegisterJobDefinition", {**JOBDEF, "containerProperties": {"image": "i", "environment": entries}},
            "at 'containerProperties.environment[0].name'")
    ok("SubmitJob", job(containerOverrides={"environment": [{"name": "A"}]}))  # a value is optional


@pytest.mark.parametrize("value", ["1e30", "inf", "nan", "-1", "1" * 25, "9" * 5000, "١", "²", "0x10", " 2", "+3",
                                   "1_000", "2147483648"])
def test_resource_requirement_values_are_bounded_decimals(value: str) -> None:
    reqs = [{"type": "MEMORY", "value": value}]
    bad("SubmitJob", job(containerOverrides={"resourceRequirements": reqs}),
        "at 'containerOverrides.resourceRequirements[0].value'",
        "must be a decimal number from 0 to 2147483647 (the VCPU, MEMORY or GPU amount)")


def test_resource_requirement_values_that_are_accepted() -> None:
    for value in ("0", "1", "0.25", ".5", "4.", "4096", "2147483647", "1.0000000001"):
        ok("SubmitJob", job(containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": value}]}))


def test_target_nodes_are_short_ascii_digits() -> None:
    def props(target: str) -> dict[str, Any]:
        return {**JOBDEF, "type": "multinode", "nodeProperties": {
            "numNodes": 2, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": target}]}}

    for target in ("0", "0:1", ":1", "1:", ":", "9999999999:"):
        ok("RegisterJobDefinition", props(target))
    for target in ("9" * 5000, "١", "0:1:2", "a", "0-1", "12345678901", ""):
        bad("RegisterJobDefinition", props(target), "at 'nodeProperties.nodeRangeProperties[0].targetNodes'")


def test_list_jobs_filter_values_are_bounded() -> None:
    ok("ListJobs", {"jobQueue": "q", "filters": [{"name": "JOB_NAME", "values": ["x" * 1024]}]})
    bad("ListJobs", {"jobQueue": "q", "filters": [{"name": "JOB_NAME", "values": ["x" * 1025]}]},
        "at 'filters[0].values[0]'", "length less than or equal to 1024")


def test_no_input_shape_is_a_no_op() -> None:
    validate_request("Whatever", None, {"anything": 1})


# ---------------------------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        (job(jobName=123), ["Value 123 at 'jobName'", "must be a string, not an integer"]),
        (
            job(arrayProperties={"size": "3"}),
            ["Value '3' at 'arrayProperties.size'", "must be an integer, not a string"],
        ),
        (
            job(arrayProperties={"size": True}),
            ["at 'arrayProperties.size'", "must be an integer, not a boolean"],
        ),
        (
            job(arrayProperties={"size": 3.0}),
            ["at 'arrayProperties.size'", "must be an integer, not a number"],
        ),
        (job(arrayProperties={"size": 2**40}), ["at 'arrayProperties.size'", "less than or equal to 10000"]),
        (job(propagateTags="true"), ["Value 'true' at 'propagateTags'", "must be a boolean"]),
        (job(propagateTags=1), ["at 'propagateTags'", "must be a boolean (true or false), not an integer"]),
        (job(containerOverrides=[]), ["at 'containerOverrides'", "must be an object, not an array"]),
        (
            job(containerOverrides={"command": "echo hi"}),
            ["at 'containerOverrides.command'", "must be an array"],
        ),
        (job(containerOverrides={"command": ["a", None]}), ["Value null at 'containerOverrides.command[1]'"]),
        (job(containerOverrides={"command": ["a", 2]}), ["Value 2 at 'containerOverrides.command[1]'"]),
        (job(parameters=["a"]), ["at 'parameters'", "must be an object, not an array"]),
        (job(parameters={"a": 1}), ["Value 1 at 'parameters.a'", "must be a string"]),
        (job(parameters={"a": None}), ["Value null at 'parameters.a'", "must not be null"]),
        (job(dependsOn={"jobId": "x"}), ["at 'dependsOn'", "must be an array, not an object"]),
    ],
)
def test_wrong_json_types(params: dict[str, Any], fragments: list[str]) -> None:
    bad("SubmitJob", params, *fragments)


def test_float_members_accept_ints_and_reject_nan_strings_and_bools() -> None:
    def policy(weight: Any) -> dict[str, Any]:
        return {
            "name": "p",
            "fairsharePolicy": {"shareDistribution": [{"shareIdentifier": "a", "weightFactor": weight}]},
        }

    ok("CreateSchedulingPolicy", policy(1))
    ok("CreateSchedulingPolicy", policy(0.5))
    path = "fairsharePolicy.shareDistribution[0].weightFactor"
    bad("CreateSchedulingPolicy", policy("NaN"), f"Value 'NaN' at '{path}'", "must be a number, not a string")
    bad("CreateSchedulingPolicy", policy("1.0"), "must be a number, not a string")
    bad("CreateSchedulingPolicy", policy(True), "must be a number, not a boolean")
    bad("CreateSchedulingPolicy", policy(float("nan")), "Value nan at", "must be a finite number")
    bad("CreateSchedulingPolicy", policy(float("inf")), "must be a finite number")


# ---------------------------------------------------------------------------------------------- enums


def test_enum_values() -> None:
    msg = bad("UpdateJobQueue", {"jobQueue": "q", "state": "FOO"}, "Value 'FOO' at 'state'")
    assert msg.endswith("Member must satisfy enum value set: [ENABLED, DISABLED]")
    bad("UpdateJobQueue", {"jobQueue": "q", "state": "enabled"}, "enum value set")
    bad("RegisterJobDefinition", {**JOBDEF, "type": "docker"}, "at 'type'", "[container, multinode]")
    bad("ListJobs", {"jobQueue": "q", "jobStatus": "DONE"}, "at 'jobStatus'", "SUBMITTED")
    bad("SubmitJob", job(dependsOn=[{"jobId": "a", "type": "ALL"}]), "at 'dependsOn[0].type'", "N_TO_N")
    bad(
        "RegisterJobDefinition",
        {**JOBDEF, "platformCapabilities": ["EC2", "MARS"]},
        "'platformCapabilities[1]'",
    )


def test_evaluate_on_exit_action_is_case_insensitive() -> None:
    for action in ("RETRY", "retry", "Exit"):
        ok(
            "SubmitJob",
            job(retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "1", "action": action}]}),
        )
    bad(
        "SubmitJob",
        job(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "again"}]}),
        "at 'retryStrategy.evaluateOnExit[0].action'",
        "(case-insensitive)",
    )


# ---------------------------------------------------------------------------------------------- model min / max


def test_model_lengths_for_tags() -> None:
    arn = {"resourceArn": ARN_Q}
    ok("TagResource", {**arn, "tags": {"k": "v", "e": ""}})
    many = {f"k{i}": "v" for i in range(51)}
    bad("TagResource", {**arn, "tags": many}, "Value {...51 entries} at 'tags'", "less than or equal to 50")
    bad(
        "TagResource",
        {**arn, "tags": {"k" * 129: "v"}},
        "at 'tags'",
        "Map keys must have length less than or equal to 128",
    )
    bad("TagResource", {**arn, "tags": {"": "v"}}, "Map keys must have length greater than or equal to 1")
    bad("TagResource", {**arn, "tags": {"k": "v" * 257}}, "at 'tags.k'", "less than or equal to 256")
    bad("UntagResource", {**arn, "tagKeys": []}, "at 'tagKeys'", "greater than or equal to 1")
    bad("UntagResource", {**arn, "tagKeys": ["a"] * 51}, "less than or equal to 50")


def test_model_number_range() -> None:
    update = {"computeEnvironment": "ce", "updatePolicy": {"jobExecutionTimeoutMinutes": 0}}
    bad(
        "UpdateComputeEnvironment",
        update,
        "at 'updatePolicy.jobExecutionTimeoutMinutes'",
        "greater than or equal to 1",
    )
    update["updatePolicy"]["jobExecutionTimeoutMinutes"] = 7201
    bad("UpdateComputeEnvironment", update, "less than or equal to 7200")


# ---------------------------------------------------------------------------------------------- generic shapes


def synthetic_shape():
    """Shape types and traits the Batch model does not use (pattern, timestamp, blob, long, double)."""
    resolver = ShapeResolver(
        {
            "Input": {
                "type": "structure",
                "required": ["code"],
                "members": {
                    "code": {"shape": "Code"},
                    "when": {"shape": "When"},
                    "data": {"shape": "Data"},
                    "big": {"shape": "Big"},
                    "ratio": {"shape": "Ratio"},
                },
            },
            "Code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "When": {"type": "timestamp"},
            "Data": {"type": "blob"},
            "Big": {"type": "long", "min": 5},
            "Ratio": {"type": "double", "max": 1.5},
        }
    )
    return resolver.get_shape_by_name("Input")


def test_generic_shape_types() -> None:
    shape = synthetic_shape()

    def check(params: dict[str, Any]) -> str | None:
        try:
            validate_request("Synthetic", shape, params)
        except ClientException as exc:
            return exc.message
        return None

    assert check({"code": "ABC", "when": 1700000000, "data": "aGVsbG8=", "big": 2**40, "ratio": 1}) is None
    assert check({"code": "ABC", "when": "2024-01-02T03:04:05Z"}) is None
    assert "regular expression pattern: ^[A-Z]{3}$" in check({"code": "abcd"})
    assert "be a timestamp" in check({"code": "ABC", "when": "yesterday"})
    assert "be a timestamp" in check({"code": "ABC", "when": True})
    assert "base64" in check({"code": "ABC", "data": "***"})
    assert "greater than or equal to 5" in check({"code": "ABC", "big": 4})
    assert "less than or equal to 9223372036854775807" in check({"code": "ABC", "big": 2**63})
    assert "less than or equal to 1.5" in check({"code": "ABC", "ratio": 1.6})


# ---------------------------------------------------------------------------------------------- names


NAME_MEMBERS = [
    ("CreateComputeEnvironment", {"type": "MANAGED"}, "computeEnvironmentName"),
    ("CreateJobQueue", {"priority": 1}, "jobQueueName"),
    ("RegisterJobDefinition", {"type": "container"}, "jobDefinitionName"),
    ("CreateSchedulingPolicy", {}, "name"),
]


@pytest.mark.parametrize(("op", "base", "member"), NAME_MEMBERS)
def test_resource_names(op: str, base: dict[str, Any], member: str) -> None:
    ok(op, {**base, member: "A-z_09"})
    ok(op, {**base, member: "-starts-with-hyphen"})
    ok(op, {**base, member: "x" * 128})
    bad(op, {**base, member: "x" * 129}, f"at '{member}'", "less than or equal to 128")
    bad(op, {**base, member: "has space"}, f"Value 'has space' at '{member}'", "letters, numbers, hyphens")
    bad(op, {**base, member: "dot.name"}, f"at '{member}'")
    bad(op, {**base, member: ""}, f"at '{member}'", "not be empty")


def test_job_name_first_character() -> None:
    ok("SubmitJob", job(jobName="a-b_c"))
    ok("SubmitJob", job(jobName="9" * 128))
    bad("SubmitJob", job(jobName="-x"), "Value '-x' at 'jobName'", "start with a letter or number")
    bad("SubmitJob", job(jobName="_x"), "at 'jobName'")
    bad("SubmitJob", job(jobName="a/b"), "at 'jobName'")
    bad("SubmitJob", job(jobName="x" * 129), "(129 characters)", "less than or equal to 128")


# ---------------------------------------------------------------------------------------------- SubmitJob limits


def test_array_size() -> None:
    ok("SubmitJob", job(arrayProperties={"size": 2}))
    ok("SubmitJob", job(arrayProperties={"size": 10000}))
    ok("SubmitJob", job(arrayProperties={}))
    bad(
        "SubmitJob",
        job(arrayProperties={"size": 1}),
        "Value 1 at 'arrayProperties.size'",
        "greater than or equal to 2",
    )
    bad("SubmitJob", job(arrayProperties={"size": 10001}), "less than or equal to 10000")


def test_depends_on_count() -> None:
    ok("SubmitJob", job(dependsOn=[{"jobId": f"j{i}"} for i in range(20)]))
    bad(
        "SubmitJob",
        job(dependsOn=[{"jobId": f"j{i}"} for i in range(21)]),
        "[...21 items] at 'dependsOn'",
        "20",
    )


def test_scheduling_priorities_and_share_identifier() -> None:
    ok("SubmitJob", job(schedulingPriorityOverride=0, shareIdentifier="s" * 255))
    ok("SubmitJob", job(schedulingPriorityOverride=9999))
    bad(
        "SubmitJob",
        job(schedulingPriorityOverride=-1),
        "at 'schedulingPriorityOverride'",
        "greater than or equal to 0",
    )
    bad("SubmitJob", job(schedulingPriorityOverride=10000), "less than or equal to 9999")
    bad("RegisterJobDefinition", {**JOBDEF, "schedulingPriority": 10000}, "at 'schedulingPriority'")
    bad("SubmitJob", job(shareIdentifier="s" * 256), "at 'shareIdentifier'", "less than or equal to 255")
    bad("SubmitJob", job(shareIdentifier=""), "at 'shareIdentifier'", "greater than or equal to 1")


def test_retry_strategy() -> None:
    ok("SubmitJob", job(retryStrategy={"attempts": 1}))
    ok("RegisterJobDefinition", {**JOBDEF, "retryStrategy": {"attempts": 10}})
    bad(
        "SubmitJob",
        job(retryStrategy={"attempts": 0}),
        "at 'retryStrategy.attempts'",
        "greater than or equal to 1",
    )
    bad("RegisterJobDefinition", {**JOBDEF, "retryStrategy": {"attempts": 11}}, "less than or equal to 10")
    six = [{"action": "EXIT", "onExitCode": str(i)} for i in range(6)]
    bad(
        "SubmitJob",
        job(retryStrategy={"attempts": 2, "evaluateOnExit": six}),
        "at 'retryStrategy.evaluateOnExit'",
        "5",
    )


@pytest.mark.parametrize(
    ("member", "good", "bad_value"),
    [
        ("onExitCode", ["0", "137", "1*", "*", "1" * 512], ["", "1a", "*1", "-1", "1 ", "1" * 513]),
        (
            "onReason",
            ["CannotPullContainerError:*", "Task failed to start", "a.b:c\td", "*"],
            ["a-b", "x*y", "é"],
        ),
        (
            "onStatusReason",
            ["Host EC2*", "Essential container in task exited"],
            ["Host EC2 (i-1)", "a" * 513],
        ),
    ],
)
def test_evaluate_on_exit_patterns(member: str, good: list[str], bad_value: list[str]) -> None:
    def params(value: str) -> dict[str, Any]:
        return job(retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "RETRY", member: value}]})

    for value in good:
        ok("SubmitJob", params(value))
    for value in bad_value:
        bad("SubmitJob", params(value), f"at 'retryStrategy.evaluateOnExit[0].{member}'")


def test_attempt_duration_minimum_is_a_setting() -> None:
    ok("SubmitJob", job(timeout={"attemptDurationSeconds": 60}))
    bad("SubmitJob", job(timeout={"attemptDurationSeconds": 59}), "at 'timeout.attemptDurationSeconds'", "60")
    bad(
        "RegisterJobDefinition",
        {**JOBDEF, "timeout": {"attemptDurationSeconds": 1}},
        "greater than or equal to 60",
    )
    validate.set_min_attempt_duration(1)
    ok("SubmitJob", job(timeout={"attemptDurationSeconds": 1}))
    bad("SubmitJob", job(timeout={"attemptDurationSeconds": 0}), "greater than or equal to 1")


def test_setters_reject_nonsense() -> None:
    for value in (-1, 1.5, "60", True):
        with pytest.raises(ValueError):
            validate.set_min_attempt_duration(value)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            validate.set_min_state_time_limit(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- environment


def _overrides(env: list) -> tuple[str, dict[str, Any]]:
    return "SubmitJob", job(containerOverrides={"environment": env})


def _container(env: list) -> tuple[str, dict[str, Any]]:
    return "RegisterJobDefinition", {**JOBDEF, "containerProperties": {"image": "i", "environment": env}}


def _node_range(env: list) -> tuple[str, dict[str, Any]]:
    node = {"targetNodes": "0", "container": {"image": "i", "environment": env}}
    return "RegisterJobDefinition", {
        **JOBDEF,
        "type": "multinode",
        "nodeProperties": {"numNodes": 1, "mainNode": 0, "nodeRangeProperties": [node]},
    }


def _ecs_task(env: list) -> tuple[str, dict[str, Any]]:
    task = {"containers": [{"image": "i", "environment": env}]}
    return "RegisterJobDefinition", {**JOBDEF, "ecsProperties": {"taskProperties": [task]}}


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (_overrides, "containerOverrides.environment[2].name"),
        (_container, "containerProperties.environment[2].name"),
        (_node_range, "nodeProperties.nodeRangeProperties[0].container.environment[2].name"),
        (_ecs_task, "ecsProperties.taskProperties[0].containers[0].environment[2].name"),
    ],
)
def test_reserved_environment_prefix(build: Any, path: str) -> None:
    def env(*names: str) -> list[dict[str, str]]:
        return [{"name": n, "value": "v"} for n in names]

    ok(*build(env("A", "B", "MY_AWS_BATCH", "aws_batch_lower")))
    op, params = build(env("A", "B", "AWS_BATCH_JOB_ID"))
    bad(op, params, f"Value 'AWS_BATCH_JOB_ID' at '{path}'", "not start with 'AWS_BATCH'")


def test_reserved_prefix_in_eks_env() -> None:
    eks = {"podProperties": {"containers": [{"image": "i", "env": [{"name": "AWS_BATCHX"}]}]}}
    bad(
        "RegisterJobDefinition",
        {**JOBDEF, "eksProperties": eks},
        "eksProperties.podProperties.containers[0].env[0].name",
    )


# ---------------------------------------------------------------------------------------------- job queues


def test_job_queue_limits() -> None:
    ok("CreateJobQueue", {**QUEUE, "priority": 0})
    ok("CreateJobQueue", {**QUEUE, "priority": 1000})
    bad(
        "CreateJobQueue",
        {**QUEUE, "priority": 1001},
        "Value 1001 at 'priority'",
        "less than or equal to 1000",
    )
    bad("UpdateJobQueue", {"jobQueue": "q", "priority": -1}, "at 'priority'", "greater than or equal to 0")
    order = [{"order": i, "computeEnvironment": f"ce{i}"} for i in range(4)]
    ok("CreateJobQueue", {**QUEUE, "computeEnvironmentOrder": order[:3]})
    bad("CreateJobQueue", {**QUEUE, "computeEnvironmentOrder": order}, "at 'computeEnvironmentOrder'", "3")
    bad("UpdateJobQueue", {"jobQueue": "q", "computeEnvironmentOrder": order}, "at 'computeEnvironmentOrder'")


def test_state_time_limit_actions() -> None:
    def action(seconds: Any) -> dict[str, Any]:
        entry = {"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": seconds, "action": "CANCEL"}
        return {**QUEUE, "jobStateTimeLimitActions": [entry]}

    ok("CreateJobQueue", action(600))
    ok("CreateJobQueue", action(86400))
    path = "jobStateTimeLimitActions[0].maxTimeSeconds"
    bad("CreateJobQueue", action(599), f"Value 599 at '{path}'", "greater than or equal to 600")
    bad("CreateJobQueue", action(86401), "less than or equal to 86400")
    validate.set_min_state_time_limit(1)
    ok("CreateJobQueue", action(1))
    bad("CreateJobQueue", action(0), "greater than or equal to 1")
    entry = {"reason": "", "state": "RUNNABLE", "maxTimeSeconds": 600, "action": "CANCEL"}
    bad(
        "CreateJobQueue", {**QUEUE, "jobStateTimeLimitActions": [entry]}, "jobStateTimeLimitActions[0].reason"
    )
    entry = {**entry, "reason": "r", "state": "RUNNING"}
    bad("CreateJobQueue", {**QUEUE, "jobStateTimeLimitActions": [entry]}, "jobStateTimeLimitActions[0].state")


# ---------------------------------------------------------------------------------------------- fair share


def test_fairshare_policy() -> None:
    def policy(**fair: Any) -> dict[str, Any]:
        return {"name": "p", "fairsharePolicy": fair}

    ok("CreateSchedulingPolicy", policy(shareDecaySeconds=0, computeReservation=0))
    ok("CreateSchedulingPolicy", policy(shareDecaySeconds=604800, computeReservation=99))
    bad("CreateSchedulingPolicy", policy(shareDecaySeconds=604801), "'fairsharePolicy.shareDecaySeconds'")
    bad("CreateSchedulingPolicy", policy(shareDecaySeconds=-1), "greater than or equal to 0")
    bad(
        "CreateSchedulingPolicy", policy(computeReservation=100), "'fairsharePolicy.computeReservation'", "99"
    )
    for weight in (0.0001, 999.9999, 1):
        ok(
            "CreateSchedulingPolicy",
            policy(shareDistribution=[{"shareIdentifier": "a*", "weightFactor": weight}]),
        )
    for weight in (0, 0.00009, 1000):
        bad(
            "UpdateSchedulingPolicy",
            {
                "arn": "x",
                "fairsharePolicy": {"shareDistribution": [{"shareIdentifier": "a", "weightFactor": weight}]},
            },
            "weightFactor",
        )
    dist = [{"shareIdentifier": "a*b"}]
    bad(
        "CreateSchedulingPolicy",
        policy(shareDistribution=dist),
        "shareDistribution[0].shareIdentifier",
        "* only as the last",
    )
    dist = [{"shareIdentifier": "s" * 256}]
    bad("CreateSchedulingPolicy", policy(shareDistribution=dist), "less than or equal to 255")


# ---------------------------------------------------------------------------------------------- cancel / describe / list


@pytest.mark.parametrize("op", ["CancelJob", "TerminateJob"])
def test_reason_length(op: str) -> None:
    ok(op, {"jobId": "j", "reason": "r" * 1024})
    bad(op, {"jobId": "j", "reason": "r" * 1025}, "at 'reason'", "less than or equal to 1024")


@pytest.mark.parametrize("op", ["CancelJobs", "TerminateJobs"])
def test_bulk_limits(op: str) -> None:
    ok(op, {"jobs": ["j"] * 50, "reason": "r"})
    bad(op, {"jobs": ["j"] * 51, "reason": "r"}, "at 'jobs'", "less than or equal to 50")
    ok(op, {"jobs": [], "reason": "r"})
    bad(op, {"jobs": ["j"], "reason": ""}, "at 'reason'", "not be empty")
    bad(op, {"jobs": ["j"], "reason": "r" * 1025}, "at 'reason'")


@pytest.mark.parametrize(
    ("op", "member"),
    [
        ("DescribeJobs", "jobs"),
        ("DescribeJobQueues", "jobQueues"),
        ("DescribeComputeEnvironments", "computeEnvironments"),
        ("DescribeJobDefinitions", "jobDefinitions"),
        ("DescribeSchedulingPolicies", "arns"),
    ],
)
def test_describe_lists(op: str, member: str) -> None:
    ok(op, {member: ["x"] * 100})
    bad(op, {member: ["x"] * 101}, f"at '{member}'", "less than or equal to 100")


@pytest.mark.parametrize(
    ("op", "top"),
    [
        ("DescribeJobQueues", 100),
        ("DescribeComputeEnvironments", 100),
        ("DescribeJobDefinitions", 100),
        ("ListSchedulingPolicies", 100),
        ("ListJobs", 1000),
    ],
)
def test_max_results(op: str, top: int) -> None:
    ok(op, {"maxResults": 1})
    ok(op, {"maxResults": top})
    bad(op, {"maxResults": 0}, "Value 0 at 'maxResults'", "greater than or equal to 1")
    bad(op, {"maxResults": top + 1}, f"less than or equal to {top}")


# ---------------------------------------------------------------------------------------------- tags and ARNs


def test_tag_keys_must_not_use_aws_prefix() -> None:
    bad(
        "SubmitJob",
        job(tags={"ok": "1", "aws:cost": "2"}),
        "Value 'aws:cost' at 'tags'",
        "Map keys must not start with 'aws:'",
    )
    bad("CreateJobQueue", {**QUEUE, "tags": {"AWS:x": "1"}}, "at 'tags'")
    bad("UntagResource", {"resourceArn": ARN_Q, "tagKeys": ["a", "aws:b"]}, "Value 'aws:b' at 'tagKeys[1]'")
    ok("SubmitJob", job(tags={"awsome": "1", "my:aws:x": "2"}))


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:batch:us-east-1:123456789012:job-queue/q1",
        "arn:aws:batch:eu-west-3:123456789012:compute-environment/ce_1",
        "arn:aws:batch:us-east-1:123456789012:job-definition/jd:3",
        "arn:aws:batch:us-east-1:123456789012:job-definition/jd",
        "arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
        "arn:aws:batch:us-east-1:123456789012:scheduling-policy/sp",
        "arn:aws-cn:batch:cn-north-1:123456789012:job-queue/q",
        "arn:aws-us-gov:batch:us-gov-west-1:123456789012:job-queue/q",
    ],
)
def test_good_resource_arns(arn: str) -> None:
    ok("ListTagsForResource", {"resourceArn": arn})


@pytest.mark.parametrize(
    "arn",
    [
        "q1",
        "arn:aws:batch:us-east-1:123456789012:jobqueue/q1",
        "arn:aws:batch:us-east-1:123456789012:job-queue/",
        "arn:aws:batch:us-east-1:123456789012:job-queue/bad name",
        "arn:aws:batch:us-east-1:12345:job-queue/q1",
        "arn:aws:ecs:us-east-1:123456789012:cluster/c",
        "arn:aws:batch:nowhere:123456789012:job-queue/q1",
        "arn:aws:batch:us-east-1:123456789012:job-definition/jd:x",
    ],
)
def test_bad_resource_arns(arn: str) -> None:
    bad("ListTagsForResource", {"resourceArn": arn}, "at 'resourceArn'", "AWS Batch resource ARN")
    bad("TagResource", {"resourceArn": arn, "tags": {"a": "b"}}, "at 'resourceArn'")


# ---------------------------------------------------------------------------------------------- messages


def test_message_format_is_exact() -> None:
    msg = bad(
        "SubmitJob",
        job(containerOverrides={"environment": [{"name": "A"}, {"name": "B"}, {"name": "AWS_BATCH_X"}]}),
    )
    assert msg == (
        "1 validation error detected: Value 'AWS_BATCH_X' at 'containerOverrides.environment[2].name' "
        "failed to satisfy constraint: Member must not start with 'AWS_BATCH'"
    )


def test_long_values_are_shortened_in_messages() -> None:
    msg = bad("SubmitJob", job(jobName="x" * 5000))
    assert len(msg) < 300
    msg = bad("DescribeJobs", {"jobs": ["j"] * 101})
    assert "[...101 items]" in msg and len(msg) < 200


def test_first_problem_wins_and_required_come_first() -> None:
    msg = bad("SubmitJob", {"jobName": "-bad", "jobQueue": "q", "arrayProperties": {"size": 0}})
    assert "at 'jobName'" in msg
    msg = bad("SubmitJob", {"jobName": "ok", "jobQueue": "q", "arrayProperties": {"size": 0}})
    assert "Value null at 'jobDefinition'" in msg


# ---------------------------------------------------------------------------------------------- table, caching, speed


def compile_all() -> None:
    service = model.service_model()
    for op in service.operation_names:
        shape = service.operation_model(op).input_shape
        if shape is not None:
            validate.compile_operation(op, shape)


def test_every_limit_row_matches_the_model() -> None:
    # A row whose path is misspelled (or that a model update removed) would silently never apply.
    compile_all()
    assert set(LIMITS) - validate.used_limits() == set()


def test_docs_carry_the_current_limits_table() -> None:
    doc = (REPO / "docs" / "api-validation.md").read_text(encoding="utf-8")
    assert validate.limits_table_markdown() in doc, (
        "regenerate the table with validate.limits_table_markdown()"
    )


def test_body_limits() -> None:
    assert validate.BODY_LIMITS["SubmitJob"] == 30 * 1024
    assert validate.BODY_LIMITS["RegisterJobDefinition"] == 24 * 1024


def test_validators_are_compiled_once_per_operation() -> None:
    shape = shape_of("DescribeJobs")
    first = validate.compile_operation("DescribeJobs", shape)
    validate_request("DescribeJobs", shape, {"jobs": ["a"]})
    assert validate.compile_operation("DescribeJobs", shape) is first
    assert "def validate(p):" in (validate.generated_source("DescribeJobs") or "")


def test_paths_through_shared_functions() -> None:
    # ContainerProperties, EcsProperties and TaskContainerProperties repeat in RegisterJobDefinition, so they are
    # generated once as shared functions; the path must still be complete, with every index.
    containers = [{"image": "i"}, {"image": "i"}, {"image": "i", "environment": [{"name": "AWS_BATCH_X"}]}]
    ranges = [
        {"targetNodes": "0", "container": {"image": "i"}},
        {"targetNodes": "1:", "ecsProperties": {"taskProperties": [{"containers": containers}]}},
    ]
    params = {
        **JOBDEF,
        "type": "multinode",
        "nodeProperties": {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": ranges},
    }
    bad(
        "RegisterJobDefinition",
        params,
        "at 'nodeProperties.nodeRangeProperties[1].ecsProperties.taskProperties[0].containers[2].environment[0].name'",
    )
    ranges[0]["container"] = []
    bad(
        "RegisterJobDefinition",
        params,
        "Value [] at 'nodeProperties.nodeRangeProperties[0].container'",
        "an object",
    )
    assert "def _f" in (validate.generated_source("RegisterJobDefinition") or "")


def test_child_job_arns_pass_validation_for_the_handler_to_refuse() -> None:
    # Well-formed child ARNs reach the tags handler, whose message says why they cannot be tagged.
    for arn in (
        "arn:aws:batch:us-east-1:123456789012:job/abc:3",
        "arn:aws:batch:us-east-1:123456789012:job/abc#0",
    ):
        ok("TagResource", {"resourceArn": arn, "tags": {"a": "b"}})
    bad("TagResource", {"resourceArn": "arn:aws:batch:us-east-1:123456789012:job/abc:x", "tags": {"a": "b"}},
        "at 'resourceArn'")


def test_validation_changes_nothing_but_nulls() -> None:
    params = job(containerOverrides={"environment": [{"name": "A", "value": "1"}]}, tags={"k": "v"})
    before = copy.deepcopy(params)
    ok("SubmitJob", params)
    assert params == before


# ---------------------------------------------------------------------------------------------- empty maps and lists
# Where the model's `min` on a map or list is not what AWS enforces (docs/api-validation.md, "Minimum counts").

# A minimal valid request for every operation with a tag map, keyed by (operation, member path).
_EMPTY_MAP_CASES: dict[tuple[str, str], dict[str, Any]] = {
    ("SubmitJob", "tags"): job(tags={}),
    ("RegisterJobDefinition", "tags"): {**JOBDEF, "tags": {}},
    ("CreateJobQueue", "tags"): {**QUEUE, "tags": {}},
    ("CreateSchedulingPolicy", "tags"): {"name": "sp", "tags": {}},
    ("CreateComputeEnvironment", "tags"): {"computeEnvironmentName": "ce", "type": "UNMANAGED", "tags": {}},
    ("CreateComputeEnvironment", "computeResources.capacityTags"): {
        "computeEnvironmentName": "ce",
        "type": "MANAGED",
        "computeResources": {"type": "EC2", "maxvCpus": 4, "capacityTags": {}},
    },
    ("UpdateComputeEnvironment", "computeResources.capacityTags"): {
        "computeEnvironment": "ce",
        "computeResources": {"capacityTags": {}},
    },
    ("CreateConsumableResource", "tags"): {"consumableResourceName": "cr", "tags": {}},
    ("CreateServiceEnvironment", "tags"): {
        "serviceEnvironmentName": "se",
        "serviceEnvironmentType": "SAGEMAKER_TRAINING",
        "capacityLimits": [],
        "tags": {},
    },
    ("CreateQuotaShare", "tags"): {
        "quotaShareName": "qs",
        "jobQueue": "q",
        "capacityLimits": [{"maxCapacity": 1, "capacityUnit": "ml.m5.large"}],
        "resourceSharingConfiguration": {"strategy": "RESERVE"},
        "preemptionConfiguration": {"inSharePreemption": "ENABLED"},
        "tags": {},
    },
    ("SubmitServiceJob", "tags"): {
        "jobName": "sj",
        "jobQueue": "q",
        "serviceRequestPayload": "{}",
        "serviceJobType": "SAGEMAKER_TRAINING",
        "tags": {},
    },
    # TagResource with no tags passes validation; the handler refuses it (tests/test_tags.py).
    ("TagResource", "tags"): {"resourceArn": ARN_Q, "tags": {}},
}


def _input_maps_with_a_model_minimum() -> set[tuple[str, str]]:
    """Every (operation, member path) in the Batch model's inputs that reaches a map with a `min` > 0."""
    service = model.service_model()
    found: set[tuple[str, str]] = set()

    def walk(op: str, shape: Any, path: str, seen: frozenset[str]) -> None:
        if shape.type_name == "structure" and shape.name not in seen:
            for name, member in shape.members.items():
                walk(op, member, f"{path}.{name}" if path else name, seen | {shape.name})
        elif shape.type_name == "list":
            walk(op, shape.member, path + "[]", seen)
        elif shape.type_name == "map":
            if shape.metadata.get("min"):
                found.add((op, path))
            walk(op, shape.value, path + "{}", seen)

    for op in service.operation_names:
        shape = service.operation_model(op).input_shape
        if shape is not None:
            walk(op, shape, "", frozenset())
    return found


def test_every_map_with_a_model_minimum_has_an_empty_map_case() -> None:
    # A new botocore that adds a map with a minimum must get a case here (and a line in the docs).
    assert _input_maps_with_a_model_minimum() == set(_EMPTY_MAP_CASES)


@pytest.mark.parametrize(("op", "path"), sorted(_EMPTY_MAP_CASES))
def test_empty_maps_are_accepted(op: str, path: str) -> None:
    # Airflow's BatchOperator sends "tags": {} with every SubmitJob and AWS accepts it.
    ok(op, _EMPTY_MAP_CASES[(op, path)])


def test_maps_keep_their_maximum_and_key_rules() -> None:
    bad("SubmitJob", job(tags={f"k{i}": "v" for i in range(51)}), "at 'tags'", "less than or equal to 50")
    bad("SubmitJob", job(tags={"": "v"}), "Map keys must have length greater than or equal to 1")
    capacity = {"computeEnvironment": "ce", "computeResources": {"capacityTags": {"": "v"}}}
    bad("UpdateComputeEnvironment", capacity, "at 'computeResources.capacityTags'", "Map keys")


@pytest.mark.parametrize("op", ["CancelJobs", "TerminateJobs", "TerminateServiceJobs"])
def test_bulk_job_lists_may_be_empty(op: str) -> None:
    ok(op, {"jobs": [], "reason": "r"})
    bad(op, {"jobs": ["j"] * 51, "reason": "r"}, "at 'jobs'", "less than or equal to 50")


def test_list_minimums_that_aws_clients_enforce_stay() -> None:
    # botocore refuses tagKeys=[] before sending, and on the wire an empty list is no tagKeys at all.
    bad("UntagResource", {"resourceArn": ARN_Q, "tagKeys": []}, "at 'tagKeys'", "greater than or equal to 1")
    bad("UntagResource", {"resourceArn": ARN_Q, "tagKeys": [""]}, "at 'tagKeys[0]'", "greater than or equal to 1")
