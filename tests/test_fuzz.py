"""Schema-driven fuzz test: no request, however hostile, gets a 5xx or makes the server log a fault.

Every operation of botocore's Batch model, the three CloudWatch Logs operations batchd serves and the /batchd/
endpoints are sent a valid baseline request mutated one member at a time (tests/fuzzkit.py): wrong types,
nulls, huge, negative and non-finite numbers, 25- and 5000-digit numeric strings, long strings, unicode and
control characters, broken and re-encoded page tokens. The baselines refer to real resources created first (a
compute environment, queues, a scheduling policy, job definitions of each type, jobs, a finished job with a log
stream), so mutations reach deep handler paths. When a mutated RegisterJobDefinition, CreateComputeEnvironment,
CreateJobQueue, CreateSchedulingPolicy, SubmitJob or TagResource is accepted, the resource it made is used
next (SubmitJob with the definition, Describe*, Update*), which is how "accepted, then every later call 500s"
is caught. Seeded, so a run is repeatable; it runs in-process (tests/inproc.py) for speed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import fuzzkit as fk
from batchd.api import model
from inproc import ACCOUNT, REGION, InProcessServer, Reply

SEED = 20240610
ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}"
GROUP = "/aws/batch/job"
# Random mutations per operation on top of the core ones (fuzzkit.mutations); others get DEFAULT_EXTRA.
EXTRA = {
    "SubmitJob": 80, "RegisterJobDefinition": 80, "CreateComputeEnvironment": 40,
    "UpdateComputeEnvironment": 40, "CreateJobQueue": 40, "UpdateJobQueue": 40, "ListJobs": 60,
    "CreateSchedulingPolicy": 30, "UpdateSchedulingPolicy": 30, "DescribeJobDefinitions": 20,
    "TagResource": 20, "UntagResource": 20, "ListTagsForResource": 20, "DescribeJobs": 20,
}
DEFAULT_EXTRA = 3
LOGS_EXTRA = 60
# Operations whose failures belong to code this test does not own, left out while they are still broken.
KNOWN_BROKEN: set[str] = set()


@dataclass
class Run:
    srv: InProcessServer
    rng: random.Random
    sent: int = 0
    by_operation: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    counter: int = 0
    tokens: list[str] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    async def send(self, label: str, method: str, path: str, body: Any = None, query: bytes = b"",
                   headers: dict[str, str] | None = None, what: str = "") -> Reply:
        data = body if isinstance(body, bytes) else b"" if body is None else fk.to_json(body)
        reply = await self.srv.request(method, path, data, headers=headers, query=query)
        self.sent += 1
        self.by_operation[label] += 1
        if reply.status >= 500:
            self.failures.append(f"{label} {what} -> {reply.status} {reply.body[:300]!r}")
        return reply

    async def op(self, name: str, params: dict[str, Any], what: str = "") -> Reply:
        method, path, query, body = _http(name, params)
        return await self.send(name, method, path, body, query, what=what or "baseline")


def _http(name: str, params: dict[str, Any]) -> tuple[str, str, bytes, dict[str, Any]]:
    """The request botocore would send: the ARN in the URI and tagKeys in the query string for the tag ops."""
    route = model.service_model().operation_model(name)
    method = route.http["method"]
    uri = route.http["requestUri"].split("?")[0]
    body = dict(params)
    query = b""
    if "{" in uri:
        arn = body.pop("resourceArn", fk.DELETE)
        label = arn if isinstance(arn, str) else "" if arn is fk.DELETE else str(arn)
        uri = uri.split("{")[0] + quote(label.encode("utf-8", "surrogatepass"), safe="")
        keys = body.pop("tagKeys", None)
        if isinstance(keys, list):
            query = "&".join("tagKeys=" + quote(str(k).encode("utf-8", "surrogatepass"), safe="")
                             for k in keys).encode()
        elif keys is not None:
            query = b"tagKeys=" + quote(str(keys), safe="").encode()
    return method, uri, query, body


# --- the resources the baselines refer to ----------------------------------------------------------------------

CONTAINER = {
    "image": "busybox", "command": ["echo", "Ref::msg"], "jobRoleArn": "arn:aws:iam::123456789012:role/r",
    "environment": [{"name": "A", "value": "1"}],
    "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}],
    "volumes": [{"name": "v", "host": {"sourcePath": "/tmp"}}],
    "mountPoints": [{"sourceVolume": "v", "containerPath": "/data"}],
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
}


def compute_environment(name: str, state: str = "DISABLED") -> dict[str, Any]:
    return {
        "computeEnvironmentName": name, "type": "MANAGED", "state": state,
        "computeResources": {
            "type": "EC2", "minvCpus": 0, "maxvCpus": 4, "desiredvCpus": 0, "instanceTypes": ["optimal"],
            "subnets": ["subnet-1"], "securityGroupIds": ["sg-1"], "instanceRole": "ecsInstanceRole",
            "tags": {"k": "v"},
        },
        "serviceRole": f"arn:aws:iam::{ACCOUNT}:role/batch", "tags": {"team": "fuzz"},
    }


def job_definition(name: str) -> dict[str, Any]:
    return {
        "jobDefinitionName": name, "type": "container", "parameters": {"msg": "hi"},
        "containerProperties": CONTAINER, "retryStrategy": {
            "attempts": 2, "evaluateOnExit": [{"onExitCode": "1*", "action": "RETRY"}]},
        "timeout": {"attemptDurationSeconds": 60}, "tags": {"k": "v"}, "propagateTags": True,
        "schedulingPriority": 1,
    }


OTHER_DEFINITIONS = {
    "fzmn": {"type": "multinode", "nodeProperties": {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": [
        {"targetNodes": "0:1", "container": {"image": "busybox", "command": ["true"]}}]}},
    "fzecs": {"type": "container", "ecsProperties": {"taskProperties": [{"containers": [
        {"name": "main", "image": "busybox", "command": ["true"], "essential": True,
         "resourceRequirements": [{"type": "VCPU", "value": "1"}]}]}]}},
    "fzeks": {"type": "container", "eksProperties": {"podProperties": {"containers": [
        {"name": "main", "image": "busybox", "command": ["true"], "env": [{"name": "A", "value": "1"}],
         "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}]}}},
    "fzfg": {"type": "container", "platformCapabilities": ["FARGATE"], "containerProperties": {
        "image": "busybox", "resourceRequirements": [{"type": "VCPU", "value": "0.25"},
                                                     {"type": "MEMORY", "value": "512"}],
        "executionRoleArn": "arn:aws:iam::123456789012:role/x"}},
}


async def setup(run: Run) -> None:
    """The resources the baselines name, one finished job (with a log stream) and real page tokens."""
    srv = run.srv
    await srv.ok("CreateComputeEnvironment", compute_environment("fzce"))
    await srv.ok("CreateComputeEnvironment", {"computeEnvironmentName": "fzrun", "type": "UNMANAGED",
                                              "unmanagedvCpus": 1})
    order = [{"order": 1, "computeEnvironment": "fzce"}]
    await srv.ok("CreateJobQueue", {"jobQueueName": "fzq", "priority": 1, "computeEnvironmentOrder": order})
    await srv.ok("CreateJobQueue", {"jobQueueName": "fzrunq", "priority": 1,
                                    "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "fzrun"}]})
    sp = await srv.ok("CreateSchedulingPolicy", {"name": "fzsp", "fairsharePolicy": {
        "shareDecaySeconds": 60, "computeReservation": 1,
        "shareDistribution": [{"shareIdentifier": "a*", "weightFactor": 1.0}]}})
    run.refs["policy"] = sp["arn"]
    await srv.ok("CreateJobQueue", {"jobQueueName": "fzfq", "priority": 2, "schedulingPolicyArn": sp["arn"],
                                    "computeEnvironmentOrder": order})
    jd = await srv.ok("RegisterJobDefinition", job_definition("fzjd"))
    run.refs["jd"] = jd["jobDefinitionArn"]
    for name, body in OTHER_DEFINITIONS.items():
        await srv.ok("RegisterJobDefinition", {"jobDefinitionName": name, **body})
    ran = await srv.ok("SubmitJob", {"jobName": "fzran", "jobQueue": "fzrunq", "jobDefinition": "fzjd",
                                     "parameters": {"msg": "hello"}})
    run.refs["ran"] = ran["jobId"]
    job = await srv.ok("SubmitJob", {"jobName": "fzjob", "jobQueue": "fzq", "jobDefinition": "fzjd"})
    run.refs["job"] = job["jobId"]
    array = await srv.ok("SubmitJob", {"jobName": "fzarr", "jobQueue": "fzq", "jobDefinition": "fzjd",
                                       "arrayProperties": {"size": 2}, "dependsOn": [{"jobId": job["jobId"]}]})
    run.refs["array"] = array["jobId"]
    run.refs["stream"] = await _finished_stream(srv, ran["jobId"])
    # Nothing else may run: the fuzzed jobs wait in fzq, whose compute environment is DISABLED.
    await srv.ok("UpdateComputeEnvironment", {"computeEnvironment": "fzrun", "state": "DISABLED"})
    for name, params in (
        ("ListJobs", {"jobQueue": "fzq", "jobStatus": "RUNNABLE", "maxResults": 1}),
        ("DescribeJobDefinitions", {"maxResults": 1}), ("DescribeComputeEnvironments", {"maxResults": 1}),
        ("DescribeJobQueues", {"maxResults": 1}), ("ListSchedulingPolicies", {"maxResults": 1}),
    ):
        token = (await srv.ok(name, params)).get("nextToken")
        if token:
            run.tokens.append(token)


async def _finished_stream(srv: InProcessServer, job_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = (await srv.ok("DescribeJobs", {"jobs": [job_id]}))["jobs"][0]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job["container"]["logStreamName"]
        await asyncio.sleep(0.05)
    raise AssertionError("the setup job did not finish")


def baselines(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Valid requests per operation; each mutation goes to the one that holds most of the member it changes."""
    r = run.refs
    job_arn = f"{ARN}:job/{r['job']}"
    overrides = {"command": ["echo", "x"], "environment": [{"name": "B", "value": "2"}],
                 "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "32"}]}
    submit = {"jobName": "fzs", "jobQueue": "fzq", "jobDefinition": "fzjd"}
    unmanaged = {"computeEnvironmentName": "fzce", "type": "UNMANAGED", "unmanagedvCpus": 2, "state": "DISABLED"}
    fargate = {"computeEnvironmentName": "fzce", "type": "MANAGED", "state": "DISABLED", "computeResources": {
        "type": "FARGATE", "maxvCpus": 4, "subnets": ["subnet-1"], "securityGroupIds": ["sg-1"]}}
    eks_ce = {**compute_environment("fzce"), "eksConfiguration": {
        "eksClusterArn": "arn:aws:eks:us-east-1:123456789012:cluster/c", "kubernetesNamespace": "ns"}}
    return {
        "SubmitJob": [
            {**submit, "parameters": {"msg": "m"}, "containerOverrides": overrides,
             "dependsOn": [{"jobId": r["job"]}], "arrayProperties": {"size": 2}, "retryStrategy": {
                 "attempts": 2, "evaluateOnExit": [{"onReason": "x*", "action": "EXIT"}]},
             "timeout": {"attemptDurationSeconds": 30}, "tags": {"k": "v"}, "propagateTags": True,
             "schedulingPriorityOverride": 1},
            {**submit, "jobDefinition": "fzeks", "eksPropertiesOverride": {"podProperties": {"containers": [
                {"name": "main", "command": ["echo"], "env": [{"name": "E", "value": "1"}],
                 "resources": {"limits": {"cpu": "1", "memory": "32Mi"}}}]}}},
            {**submit, "jobDefinition": "fzecs", "ecsPropertiesOverride": {"taskProperties": [{"containers": [
                {"name": "main", "command": ["true"], "environment": [{"name": "E", "value": "1"}],
                 "resourceRequirements": [{"type": "MEMORY", "value": "32"}]}]}]}},
            {**submit, "jobDefinition": "fzmn", "nodeOverrides": {"numNodes": 2, "nodePropertyOverrides": [
                {"targetNodes": "0:1", "containerOverrides": {"command": ["true"]}}]}},
            {**submit, "jobQueue": "fzfq", "shareIdentifier": "a1", "schedulingPriorityOverride": 3},
        ],
        "RegisterJobDefinition": [job_definition("fzjd")] + [
            {"jobDefinitionName": name, **body} for name, body in OTHER_DEFINITIONS.items()],
        "CreateComputeEnvironment": [compute_environment("fzce"), unmanaged, fargate, eks_ce],
        "UpdateComputeEnvironment": [
            {"computeEnvironment": "fzce", "state": "DISABLED", "computeResources": {
                "minvCpus": 0, "maxvCpus": 4, "desiredvCpus": 0, "instanceTypes": ["optimal"]},
             "updatePolicy": {"terminateJobsOnUpdate": False, "jobExecutionTimeoutMinutes": 30}},
            {"computeEnvironment": "fzrun", "unmanagedvCpus": 1, "state": "DISABLED"},
        ],
        "CreateJobQueue": [{"jobQueueName": "fzq", "priority": 1, "state": "ENABLED",
                            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "fzce"}],
                            "jobStateTimeLimitActions": [{"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 600,
                                                          "action": "CANCEL"}], "tags": {"k": "v"},
                            "schedulingPolicyArn": r["policy"]}],
        "UpdateJobQueue": [{"jobQueue": "fzq", "priority": 1, "state": "ENABLED",
                            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "fzce"}],
                            "jobStateTimeLimitActions": [{"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 600,
                                                          "action": "CANCEL"}]},
                           {"jobQueue": "fzfq", "schedulingPolicyArn": r["policy"]}],
        "CreateSchedulingPolicy": [
            {"name": "fzsp", "fairsharePolicy": {"shareDecaySeconds": 60, "computeReservation": 1,
                                                 "shareDistribution": [{"shareIdentifier": "a*", "weightFactor": 1.0},
                                                                       {"shareIdentifier": "b", "weightFactor": 0.5}]},
             "tags": {"k": "v"}},
            {"name": "fzsp", "quotaSharePolicy": {"idleResourceAssignmentStrategy": "FIFO"}}],
        "UpdateSchedulingPolicy": [{"arn": r["policy"], "fairsharePolicy": {
            "shareDecaySeconds": 30, "shareDistribution": [{"shareIdentifier": "a*", "weightFactor": 2}]}}],
        "DescribeSchedulingPolicies": [{"arns": [r["policy"]]}],
        "ListSchedulingPolicies": [{"maxResults": 5}],
        "DeleteSchedulingPolicy": [{"arn": f"{ARN}:scheduling-policy/nothere"}],
        "ListJobs": [{"jobQueue": "fzq", "jobStatus": "RUNNABLE", "maxResults": 10}] + [
            {"jobQueue": "fzq", "filters": [{"name": name, "values": [value]}]}
            for name, value in (("JOB_NAME", "fz*"), ("JOB_DEFINITION", "fzjd"), ("AFTER_CREATED_AT", "1"),
                                ("BEFORE_CREATED_AT", "99999999999999"), ("SHARE_IDENTIFIER", "a1"))
        ] + [{"arrayJobId": r["array"], "jobStatus": "PENDING"}],
        "DescribeJobs": [{"jobs": [r["job"], job_arn, f"{r['array']}:0", r["ran"]]}],
        "DescribeJobDefinitions": [{"jobDefinitionName": "fzjd", "status": "ACTIVE", "maxResults": 5},
                                   {"jobDefinitions": ["fzjd:1", r["jd"]]}],
        "DescribeComputeEnvironments": [{"computeEnvironments": ["fzce"]}, {"maxResults": 5}],
        "DescribeJobQueues": [{"jobQueues": ["fzq"]}, {"maxResults": 5}],
        "DeregisterJobDefinition": [{"jobDefinition": "fzjd:999"}],
        "DeleteComputeEnvironment": [{"computeEnvironment": "nothere"}],
        "DeleteJobQueue": [{"jobQueue": "nothere"}],
        "CancelJob": [{"jobId": r["array"], "reason": "fuzz"}],
        "TerminateJob": [{"jobId": r["job"], "reason": "fuzz"}],
        "CancelJobs": [{"jobs": [r["array"]], "reason": "fuzz"}],
        "TerminateJobs": [{"jobs": [r["job"]], "reason": "fuzz"}],
        "TagResource": [{"resourceArn": f"{ARN}:job-queue/fzq", "tags": {"k2": "v2"}}],
        "UntagResource": [{"resourceArn": f"{ARN}:job-queue/fzq", "tagKeys": ["k2"]}],
        "ListTagsForResource": [{"resourceArn": job_arn}],
    }


# --- follow-ups: use what a mutated request created ----------------------------------------------------------


async def follow_up(run: Run, name: str, params: dict[str, Any], answer: dict[str, Any], what: str) -> None:
    what = f"after {name} {what}"
    if name == "RegisterJobDefinition":
        arn = answer["jobDefinitionArn"]
        await run.op("DescribeJobDefinitions", {"jobDefinitions": [arn]}, what)
        submitted = await run.op("SubmitJob", {"jobName": "fzf", "jobQueue": "fzq", "jobDefinition": arn,
                                               "containerOverrides": {"environment": [{"name": "C"}]}}, what)
        if submitted.status == 200:
            await _use_job(run, submitted.json()["jobId"], what)
    elif name == "SubmitJob":
        await _use_job(run, answer["jobId"], what)
    elif name == "CreateComputeEnvironment":
        ce = answer["computeEnvironmentName"]
        await run.op("DescribeComputeEnvironments", {"computeEnvironments": [ce]}, what)
        await run.op("UpdateComputeEnvironment", {"computeEnvironment": ce, "computeResources": {"maxvCpus": 8}}, what)
        await run.op("CreateJobQueue", {"jobQueueName": run.fresh("fzcq"), "priority": 1, "state": "DISABLED",
                                        "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": ce}]}, what)
    elif name == "UpdateComputeEnvironment":
        arn = answer["computeEnvironmentArn"]
        await run.op("DescribeComputeEnvironments", {"computeEnvironments": [arn]}, what)
        await run.op("UpdateComputeEnvironment", {"computeEnvironment": arn, "computeResources": {"maxvCpus": 4}}, what)
    elif name in ("CreateJobQueue", "UpdateJobQueue"):
        queue = answer["jobQueueArn"]
        await run.op("DescribeJobQueues", {"jobQueues": [queue]}, what)
        submitted = await run.op("SubmitJob", {"jobName": "fzqj", "jobQueue": queue, "jobDefinition": "fzjd",
                                               "shareIdentifier": "a1"}, what)
        if submitted.status == 200:
            await _use_job(run, submitted.json()["jobId"], what)
        if name == "CreateJobQueue":
            await run.op("UpdateJobQueue", {"jobQueue": queue, "state": "DISABLED", "priority": 3}, what)
            await run.op("DeleteJobQueue", {"jobQueue": queue}, what)
    elif name in ("CreateSchedulingPolicy", "UpdateSchedulingPolicy"):
        arn = answer.get("arn") or params.get("arn")
        if isinstance(arn, str):
            await run.op("DescribeSchedulingPolicies", {"arns": [arn]}, what)
            await run.op("UpdateSchedulingPolicy", {"arn": arn, "fairsharePolicy": {"computeReservation": 5}}, what)
            if name == "CreateSchedulingPolicy":
                await run.op("DeleteSchedulingPolicy", {"arn": arn}, what)
    elif name == "TagResource" and isinstance(params.get("resourceArn"), str):
        await run.op("ListTagsForResource", {"resourceArn": params["resourceArn"]}, what)


async def _use_job(run: Run, job_id: str, what: str) -> None:
    await run.op("DescribeJobs", {"jobs": [job_id, f"{job_id}:0"]}, what)


# --- the three parts of the run ------------------------------------------------------------------------------

CREATE_NAMES = {"CreateComputeEnvironment": "computeEnvironmentName", "CreateJobQueue": "jobQueueName",
                "CreateSchedulingPolicy": "name", "RegisterJobDefinition": "jobDefinitionName"}


# The run is split in shards (one test each) so that `pytest -n 2` runs them side by side; the heavy operations are
# spread by hand, the rest round-robin. Shard 1 also sends the raw requests, shard 2 the Logs operations.
SHARDS = 3
PINNED = {"RegisterJobDefinition": 0, "SubmitJob": 1, "ListJobs": 1, "CreateJobQueue": 1, "UpdateJobQueue": 1,
          "CreateComputeEnvironment": 2, "UpdateComputeEnvironment": 2}


def operations_of(shard: int) -> list[str]:
    names = sorted(model.service_model().operation_names)
    return [n for i, n in enumerate(names) if PINNED.get(n, i % SHARDS) == shard]


async def fuzz_batch(run: Run, operations: list[str]) -> None:
    base = baselines(run)
    service = model.service_model()
    for name in operations:
        root = service.operation_model(name).input_shape
        if root is None:
            continue
        valid = base.get(name) or [fk.minimal(root, run.rng)]
        for baseline in valid:
            await run.op(name, baseline)
        extra = EXTRA.get(name, DEFAULT_EXTRA)
        for which, path, value, core in fk.mutations(root, valid, fk.token_values(run.tokens), run.rng, extra):
            request = fk.mutate(valid[which], root, path, value, run.rng)
            name_member = CREATE_NAMES.get(name)
            if name_member and path[0] != name_member:
                request[name_member] = run.fresh("fzn")  # a new resource each time, not "already exists"
            what = f"{'.'.join(map(str, path))} = {value!r:.80}"
            reply = await run.op(name, request, what)
            # What a core (known-hostile) value made is used next; the random ones only need their own answer.
            if reply.status == 200 and core and name in FOLLOWED:
                await follow_up(run, name, request, reply.json() or {}, what)


FOLLOWED = {"RegisterJobDefinition", "SubmitJob", "CreateComputeEnvironment", "UpdateComputeEnvironment",
            "CreateJobQueue", "UpdateJobQueue", "CreateSchedulingPolicy", "UpdateSchedulingPolicy", "TagResource"}


async def fuzz_logs(run: Run) -> None:
    stream = run.refs["stream"]
    logs_model = model.service_model("logs")
    base = {
        "GetLogEvents": {"logGroupName": GROUP, "logStreamName": stream, "startFromHead": True, "limit": 10},
        "DescribeLogStreams": {"logGroupName": GROUP, "logStreamNamePrefix": stream.split("/")[0], "limit": 5},
        "FilterLogEvents": {"logGroupName": GROUP, "logStreamNames": [stream], "filterPattern": "hello",
                            "limit": 5},
    }
    for name, baseline in base.items():
        root = logs_model.operation_model(name).input_shape
        headers = {"x-amz-target": "Logs_20140328." + name, "content-type": "application/x-amz-json-1.1"}
        first = await run.send(f"logs:{name}", "POST", "/", fk.to_json(baseline), headers=headers, what="baseline")
        tokens = [t for k, t in (first.json() or {}).items() if "oken" in k and isinstance(t, str)]
        for _, path, value, _ in fk.mutations(root, [baseline], fk.token_values(tokens), run.rng, LOGS_EXTRA):
            request = fk.mutate(baseline, root, path, value, run.rng)
            what = f"{'.'.join(map(str, path))} = {value!r:.80}"
            await run.send(f"logs:{name}", "POST", "/", fk.to_json(request), headers=headers, what=what)


# Accepted but hostile: what a job may really run with. Each must end (SUCCEEDED or FAILED) without a logged fault.
HOSTILE_RUNS = [
    {"command": ["sh", "-c", "printf 'ünï ☃ \\033[31m\\r\\n'; exit 3"]},
    {"command": ["/no/such/program", "Ref::msg"]},
    {"command": ["\u202e\u200b"]},
    {"command": ["echo"] + ["x" * 100] * 200},
    {"command": ["true"], "environment": [{"name": "E" * 200, "value": "v" * 20000}, {"name": "ü=x"}]},
    {"command": ["sh", "-c", "echo $A"], "environment": [{"name": "A", "value": "line\nbreak"}, {"name": "PATH"}]},
    {"command": ["sleep", "0"], "resourceRequirements": [{"type": "VCPU", "value": "0.0001"}]},
    # Last: these fit nowhere, so (as on AWS) they wait RUNNABLE with a MISCONFIGURATION reason, blocking the
    # queue, until they are terminated.
    {"command": ["true"], "resourceRequirements": [{"type": "VCPU", "value": "2147483647"}]},
    {"command": ["true"], "resourceRequirements": [{"type": "MEMORY", "value": "2147483647"}]},
]
FITS_NOWHERE = 2


async def run_hostile_jobs(run: Run) -> None:
    """Jobs that really run (on fzrun) with accepted but hostile overrides; each ends, nothing faults."""
    await run.op("UpdateComputeEnvironment", {"computeEnvironment": "fzrun", "state": "ENABLED"})
    ids = []
    for overrides in HOSTILE_RUNS:
        reply = await run.op("SubmitJob", {"jobName": "fzrun", "jobQueue": "fzrunq", "jobDefinition": "fzjd",
                                           "parameters": {"msg": "ü\u202e"}, "containerOverrides": overrides,
                                           "timeout": {"attemptDurationSeconds": 30}}, f"running {overrides!r:.60}")
        assert reply.status == 200, (overrides, reply.body[:200])
        ids.append(reply.json()["jobId"])
    await _wait_jobs(run, ids[:-FITS_NOWHERE], lambda j: j["status"] in ("SUCCEEDED", "FAILED"))
    for job_id in ids[-FITS_NOWHERE:]:  # each in turn is the queue's head, is told why, and is terminated
        await _wait_jobs(run, [job_id], lambda j: j.get("statusReason", "").startswith("MISCONFIGURATION:"))
        await run.op("TerminateJob", {"jobId": job_id, "reason": "fits nowhere"})
        await _wait_jobs(run, [job_id], lambda j: j["status"] == "FAILED")
    for job in (await run.srv.ok("DescribeJobs", {"jobs": ids}))["jobs"]:
        stream = (job.get("container") or {}).get("logStreamName")
        if stream:
            headers = {"x-amz-target": "Logs_20140328.GetLogEvents", "content-type": "application/x-amz-json-1.1"}
            await run.send("logs:GetLogEvents", "POST", "/", {"logGroupName": GROUP, "logStreamName": stream},
                           headers=headers, what=f"stream of {job['jobId']}")
    await run.op("UpdateComputeEnvironment", {"computeEnvironment": "fzrun", "state": "DISABLED"})


async def _wait_jobs(run: Run, ids: list[str], done: Callable[[dict[str, Any]], bool]) -> None:
    deadline = time.monotonic() + 120
    pending = set(ids)
    while pending:
        jobs = (await run.srv.ok("DescribeJobs", {"jobs": sorted(pending)}))["jobs"]
        pending -= {j["jobId"] for j in jobs if done(j)}
        assert time.monotonic() < deadline, f"jobs did not get there: {jobs}"
        await asyncio.sleep(0.05)


async def fuzz_raw(run: Run) -> None:
    """The /batchd/ endpoints, unknown paths and bodies that are not JSON objects."""
    values = ["", "-1", "0", "1" * 25, "9" * 5000, "1e3", "١", " 5", "x", "\x00", "%00", "1_0", "+1"]
    for key in ("after", "limit", "jobId"):
        for value in values:
            query = f"{key}={quote(value, safe='')}".encode()
            await run.send("batchd:events", "GET", "/batchd/events", None, query=query, what=f"{key}={value:.40}")
    await run.send("batchd:events", "GET", "/batchd/events", None, query=f"jobId={run.refs['job']}".encode())
    for method, path in (("POST", "/batchd/events"), ("GET", "/batchd/x"), ("GET", "/batchd/" + "y" * 5000),
                         ("PUT", "/v1/submitjob"), ("GET", "/v1/tags/"), ("GET", "/v1/tags/%00"),
                         ("GET", "/v1/tags/" + quote("arn:aws:batch:us-east-1:123456789012:job/" + "9" * 5000)),
                         ("GET", "/%ff%fe"), ("GET", "/v1/" + "z" * 5000)):
        await run.send("raw", method, path, None, what=f"{method} {path[:60]}")
    bodies = [b"\xff\xfe", b'{"jobName": "\xc3"}', b"[1]", b"null", b"1e400", b'{"a":' * 600, b'{"jobs": ["' +
              b"x" * 300_000 + b'"]}', b'{"jobs": [' + b"9" * 5000 + b"]}", b'{"jobQueue": "fzq", "maxResults": ' +
              b"9" * 25 + b"}", b'{"jobQueue": "fzq"', b"\x00"]
    for name in ("SubmitJob", "ListJobs", "DescribeJobs", "RegisterJobDefinition"):
        for body in bodies:
            await run.send(name, "POST", f"/v1/{name.lower()}", body, what=f"raw body {body[:40]!r}")
    for body in bodies:
        headers = {"x-amz-target": "Logs_20140328.GetLogEvents", "content-type": "application/x-amz-json-1.1"}
        await run.send("logs:GetLogEvents", "POST", "/", body, headers=headers, what=f"raw body {body[:40]!r}")


def test_shards_cover_every_operation() -> None:
    shards = [operations_of(i) for i in range(SHARDS)]
    assert sorted(sum(shards, [])) == sorted(model.service_model().operation_names)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_fuzz_finds_no_server_error(tmp_path: Path, shard: int) -> None:
    operations = operations_of(shard)

    async def main() -> Run:
        async with InProcessServer(tmp_path / "data", durable=False) as srv:
            run = Run(srv, random.Random(SEED + shard))
            await setup(run)
            await fuzz_batch(run, operations)
            if shard == 1:
                await fuzz_raw(run)
                await run_hostile_jobs(run)
            if shard == 2:
                await fuzz_logs(run)
            # A final check that the server still serves: the setup resources answer as before.
            jobs = await srv.ok("DescribeJobs", {"jobs": [run.refs["job"]]})
            assert jobs["jobs"], "the baseline job vanished"
            return run

    started = time.monotonic()
    run = asyncio.run(main())
    elapsed = time.monotonic() - started
    sent = sorted(run.by_operation)
    print(f"\nfuzz shard {shard}: {run.sent} requests in {elapsed:.1f}s, {len(operations)} Batch operations "
          f"fuzzed, {len(sent)} operations/endpoints sent; {len(run.failures)} 5xx answers, "
          f"{len(run.srv.errors)} logged errors; most sent: "
          + ", ".join(f"{op} {n}" for op, n in run.by_operation.most_common(6)))
    failures = [f for f in run.failures if f.split(" ", 1)[0] not in KNOWN_BROKEN]
    logged = [f"{r.name}: {r.getMessage()[:200]}" for r in run.srv.errors]
    assert not failures and not logged, "\n".join(
        [f"{len(failures)} 5xx answers:", *failures[:60], f"{len(logged)} logged errors:", *logged[:20]])
    assert set(operations) <= set(sent), sorted(set(operations) - set(sent))
    if shard == 2:
        assert {"logs:GetLogEvents", "logs:DescribeLogStreams", "logs:FilterLogEvents"} <= set(sent)
    if shard == 1:
        assert "batchd:events" in sent
