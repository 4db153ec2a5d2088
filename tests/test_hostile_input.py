"""Regression tests for the hostile inputs that once answered 500 (issue 10), each as a user meets it.

In-process (tests/inproc.py), on both stores. Each test fails on the code before the decoding layer
(api/decode.py and the validator's null/number rules) and passes after.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from batchd.store import resources as store
from inproc import ACCOUNT, REGION, InProcessServer

CE = {"computeEnvironmentName": "ce", "type": "UNMANAGED", "unmanagedvCpus": 1, "state": "DISABLED"}
QUEUE = {"jobQueueName": "q", "priority": 1, "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}]}
CONTAINER = {"image": "busybox", "command": ["echo", "from-definition"],
             "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "64"}]}
JOB = {"jobName": "j", "jobQueue": "q", "jobDefinition": "jd"}


def run(tmp_path: Path, scenario: Callable[[InProcessServer], Awaitable[None]]) -> None:
    """Run a scenario against a fresh server with a (DISABLED, so nothing runs) environment, queue, definition."""
    async def main() -> None:
        async with InProcessServer(tmp_path / "data") as srv:
            await srv.ok("CreateComputeEnvironment", CE)
            await srv.ok("CreateJobQueue", QUEUE)
            await srv.ok("RegisterJobDefinition", {"jobDefinitionName": "jd", "type": "container",
                                                   "containerProperties": CONTAINER})
            await scenario(srv)
            assert not srv.errors, [r.getMessage() for r in srv.errors]

    asyncio.run(main())


async def refused(srv: InProcessServer, operation: str, params: dict[str, Any], *fragments: str) -> str:
    reply = await srv.call(operation, params)
    assert reply.status == 400, (reply.status, reply.body[:300])
    message = reply.json()["message"]
    for fragment in fragments:
        assert fragment in message, message
    return message


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_null_optional_member_counts_as_absent(tmp_path: Path) -> None:
    async def scenario(srv: InProcessServer) -> None:
        job = await srv.ok("SubmitJob", {**JOB, "containerOverrides": {"command": None, "environment": None},
                                         "timeout": None, "arrayProperties": None})
        detail = (await srv.ok("DescribeJobs", {"jobs": [job["jobId"]]}))["jobs"][0]
        assert detail["container"]["command"] == ["echo", "from-definition"]
        assert "arrayProperties" not in detail and "timeout" not in detail

    run(tmp_path, scenario)


def test_managed_environment_created_with_null_min_vcpus_can_be_updated(tmp_path: Path) -> None:
    async def scenario(srv: InProcessServer) -> None:
        resources = {"type": "EC2", "minvCpus": None, "maxvCpus": 4, "desiredvCpus": 0, "subnets": ["s"],
                     "securityGroupIds": ["g"], "instanceTypes": ["optimal"], "instanceRole": "ecsInstanceRole"}
        await srv.ok("CreateComputeEnvironment", {"computeEnvironmentName": "m", "type": "MANAGED",
                                                  "computeResources": resources})
        await srv.ok("UpdateComputeEnvironment", {"computeEnvironment": "m", "computeResources": {"maxvCpus": 8}})
        ce = (await srv.ok("DescribeComputeEnvironments", {"computeEnvironments": ["m"]}))["computeEnvironments"][0]
        assert ce["computeResources"]["minvCpus"] == 0 and ce["computeResources"]["maxvCpus"] == 8

    run(tmp_path, scenario)


@pytest.mark.parametrize("entries", [[{}], [{"value": "x"}], [{"name": None, "value": "x"}]])
def test_environment_entries_need_a_name(tmp_path: Path, entries: list) -> None:
    async def scenario(srv: InProcessServer) -> None:
        await refused(srv, "SubmitJob", {**JOB, "containerOverrides": {"environment": entries}},
                      "at 'containerOverrides.environment[0].name'", "must not be null")
        await refused(srv, "RegisterJobDefinition", {
            "jobDefinitionName": "e", "type": "container",
            "containerProperties": {**CONTAINER, "environment": entries}},
            "at 'containerProperties.environment[0].name'")

    run(tmp_path, scenario)


BAD_AMOUNTS = ["1e30", "inf", "nan", "-1", "1" * 25, "9" * 5000, "١", "0x10"]


@pytest.mark.parametrize("kind", ["VCPU", "MEMORY", "GPU"])
def test_resource_amounts_must_be_bounded_decimals(tmp_path: Path, kind: str) -> None:
    async def scenario(srv: InProcessServer) -> None:
        for value in BAD_AMOUNTS:
            reqs = [{"type": kind, "value": value}]
            await refused(srv, "SubmitJob", {**JOB, "containerOverrides": {"resourceRequirements": reqs}},
                          "at 'containerOverrides.resourceRequirements[0].value'", "decimal number from 0 to")
            await refused(srv, "RegisterJobDefinition", {
                "jobDefinitionName": "r", "type": "container",
                "containerProperties": {"image": "busybox", "resourceRequirements": reqs}},
                "at 'containerProperties.resourceRequirements[0].value'")
        # What the definition accepts, SubmitJob then accepts too (the "accepted 1e30, then 500" trap).
        big = {"VCPU": "4096", "MEMORY": "2147483647", "GPU": "8"}[kind]
        jd = await srv.ok("RegisterJobDefinition", {"jobDefinitionName": "big", "type": "container",
                                                    "containerProperties": {**CONTAINER, "resourceRequirements": [
                                                        {"type": kind, "value": big}]}})
        await srv.ok("SubmitJob", {**JOB, "jobDefinition": jd["jobDefinitionArn"]})

    run(tmp_path, scenario)


def test_definition_stored_with_an_impossible_amount_fails_each_submit_with_a_400(tmp_path: Path) -> None:
    """A definition written before the check (MEMORY "1e30") answers SubmitJob with a ClientException."""
    async def scenario(srv: InProcessServer) -> None:
        arn = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/old:1"
        doc = {"jobDefinitionName": "old", "jobDefinitionArn": arn, "revision": 1, "status": "ACTIVE",
               "type": "container", "containerProperties": {
                   "image": "busybox", "resourceRequirements": [{"type": "MEMORY", "value": "1e30"}],
                   "environment": [{"value": "no name"}]}}
        with srv.service.db.tx() as conn:
            store.insert_job_definition(conn, ACCOUNT, REGION, "old", 1, arn, doc)
        store.invalidate_cache()
        await refused(srv, "SubmitJob", {**JOB, "jobDefinition": "old:1"}, "MEMORY", "from 0 to 2147483647")

    run(tmp_path, scenario)


@pytest.mark.parametrize("number", ["1" * 25, "9" * 5000, "-1", "١", "18446744073709551616"])
def test_page_tokens_with_numbers_that_do_not_fit(tmp_path: Path, number: str) -> None:
    async def scenario(srv: InProcessServer) -> None:
        for operation, scope, params in (
            ("ListJobs", "jobs", {"jobQueue": "q"}), ("DescribeComputeEnvironments", "ce", {}),
            ("DescribeJobQueues", "jq", {}), ("DescribeJobDefinitions", "jd", {}),
            ("ListSchedulingPolicies", "sp", {}),
        ):
            await refused(srv, operation, {**params, "nextToken": b64(f"{scope}:{number}")},
                          "nextToken", "is not valid")

    run(tmp_path, scenario)


def test_list_jobs_time_filters_must_fit_64_bits(tmp_path: Path) -> None:
    async def scenario(srv: InProcessServer) -> None:
        for name in ("AFTER_CREATED_AT", "BEFORE_CREATED_AT"):
            for value in ("1" * 25, "9" * 300, "١", "1e3", " 5"):
                await refused(srv, "ListJobs", {"jobQueue": "q", "filters": [{"name": name, "values": [value]}]},
                              f"Filter {name}", "must be")
        job = await srv.ok("SubmitJob", JOB)
        after = await srv.ok("ListJobs", {"jobQueue": "q", "filters": [{"name": "AFTER_CREATED_AT", "values": ["0"]}]})
        assert [j["jobId"] for j in after["jobSummaryList"]] == [job["jobId"]]

    run(tmp_path, scenario)


def test_target_nodes_with_more_digits_than_python_converts(tmp_path: Path) -> None:
    async def scenario(srv: InProcessServer) -> None:
        for target in ("9" * 5000, "0:" + "9" * 5000, "١", "0:" + "1" * 25):
            await refused(srv, "RegisterJobDefinition", {
                "jobDefinitionName": "mn", "type": "multinode", "nodeProperties": {
                    "numNodes": 2, "mainNode": 0,
                    "nodeRangeProperties": [{"targetNodes": target, "container": CONTAINER}]}},
                "nodeRangeProperties[0].targetNodes")

    run(tmp_path, scenario)


def test_job_name_and_definition_filters_are_literal(tmp_path: Path) -> None:
    """`%` and `_` match only themselves (`%*` once matched every job), and a huge pattern is a 400."""
    async def scenario(srv: InProcessServer) -> None:
        await srv.ok("RegisterJobDefinition", {"jobDefinitionName": "my_def", "type": "container",
                                               "containerProperties": CONTAINER})
        await srv.ok("RegisterJobDefinition", {"jobDefinitionName": "myxdef", "type": "container",
                                               "containerProperties": CONTAINER})
        ids = {}
        for name, definition in (("a_b", "my_def"), ("axb", "myxdef"), ("abc", "jd")):
            ids[name] = (await srv.ok("SubmitJob", {**JOB, "jobName": name, "jobDefinition": definition}))["jobId"]

        async def names(filter_name: str, value: str) -> set[str]:
            page = await srv.ok("ListJobs", {"jobQueue": "q", "filters": [{"name": filter_name, "values": [value]}]})
            return {j["jobName"] for j in page["jobSummaryList"]}

        assert await names("JOB_NAME", "%*") == set()
        assert await names("JOB_NAME", "a_*") == {"a_b"}
        assert await names("JOB_NAME", "A_B") == {"a_b"}  # names match case-insensitively
        assert await names("JOB_DEFINITION", "my_def") == {"a_b"}
        assert await names("JOB_DEFINITION", "my_*") == {"a_b"}
        assert await names("JOB_DEFINITION", "my*") == {"a_b", "axb"}
        await refused(srv, "ListJobs", {"jobQueue": "q", "filters": [{"name": "JOB_NAME", "values": ["z" * 60000 + "*"]}]},
                      "at 'filters[0].values[0]'", "length less than or equal to 1024")

    run(tmp_path, scenario)


def test_nul_characters_are_refused_naming_the_member(tmp_path: Path) -> None:
    async def scenario(srv: InProcessServer) -> None:
        await refused(srv, "SubmitJob", {**JOB, "parameters": {"a": "x\x00y"}}, "at 'parameters.a'", "NUL")
        await refused(srv, "SubmitJob", {**JOB, "tags": {"k\x00": "v"}}, "at 'tags'", "NUL")
        await refused(srv, "CancelJob", {"jobId": "j", "reason": "\x00"}, "at 'reason'", "NUL")
        reply = await srv.request("GET", "/batchd/events", query=b"jobId=%00")
        assert reply.status == 400 and "jobId" in reply.json()["message"], reply.body

    run(tmp_path, scenario)


@pytest.mark.parametrize("query", [b"after=" + b"1" * 25, b"after=" + b"9" * 5000, b"limit=%D9%A1", b"after=-1"])
def test_events_query_numbers_must_fit(tmp_path: Path, query: bytes) -> None:
    async def scenario(srv: InProcessServer) -> None:
        reply = await srv.request("GET", "/batchd/events", query=query)
        assert reply.status == 400, reply.body
        assert query.split(b"=")[0].decode() in reply.json()["message"]

    run(tmp_path, scenario)
