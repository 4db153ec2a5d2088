"""Scheduling policies: create, describe, list (pages), update, delete, and fair-share validation."""

from __future__ import annotations

import pytest

PREFIX = "arn:aws:batch:us-east-1:123456789012:scheduling-policy"
FAIRSHARE = {
    "shareDecaySeconds": 3600,
    "computeReservation": 25,
    "shareDistribution": [{"shareIdentifier": "teamA*", "weightFactor": 0.5}, {"shareIdentifier": "teamB"}],
}


def client_error(excinfo) -> str:
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Message"]


def describe(batch, arn: str) -> dict | None:
    docs = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"]
    return docs[0] if docs else None


def test_create_describe_update_delete(batch, unique):
    name = unique("sp")
    out = batch.create_scheduling_policy(name=name, fairsharePolicy=FAIRSHARE, tags={"k": "v"})
    arn = f"{PREFIX}/{name}"
    assert (out["name"], out["arn"]) == (name, arn)
    assert describe(batch, arn) == {
        "name": name,
        "arn": arn,
        "fairsharePolicy": FAIRSHARE,
        "tags": {"k": "v"},
    }
    listed = [
        p["arn"]
        for p in batch.get_paginator("list_scheduling_policies")
        .paginate()
        .build_full_result()["schedulingPolicies"]
    ]
    assert arn in listed
    batch.update_scheduling_policy(arn=arn, fairsharePolicy={"shareDecaySeconds": 10})
    assert describe(batch, arn)["fairsharePolicy"] == {
        "shareDecaySeconds": 10,
        "computeReservation": 0,
        "shareDistribution": [],
    }
    batch.delete_scheduling_policy(arn=arn)
    assert describe(batch, arn) is None
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_scheduling_policy(arn=arn)
    assert "does not exist" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException):
        batch.update_scheduling_policy(arn=arn, fairsharePolicy={})


def test_defaults_and_duplicates(batch, unique):
    name = unique("sp")
    arn = batch.create_scheduling_policy(name=name)["arn"]
    assert describe(batch, arn) == {
        "name": name,
        "arn": arn,
        "tags": {},  # and no invented fairsharePolicy (tests/test_describe_fidelity.py)
    }
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_scheduling_policy(name=name)
    assert "already exists" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException):
        batch.create_scheduling_policy(name="no spaces allowed")


def test_describe_rules(batch, unique):
    arn = batch.create_scheduling_policy(name=unique("sp"))["arn"]
    got = batch.describe_scheduling_policies(arns=[arn, f"{PREFIX}/nope", arn, "not-an-arn"])[
        "schedulingPolicies"
    ]
    assert [p["arn"] for p in got] == [arn]
    with pytest.raises(batch.exceptions.ClientException):
        batch.describe_scheduling_policies(arns=[])
    with pytest.raises(batch.exceptions.ClientException):
        batch.describe_scheduling_policies(arns=[arn] * 101)


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        ({"shareDecaySeconds": 604801}, "shareDecaySeconds"),
        ({"shareDecaySeconds": -1}, "shareDecaySeconds"),
        ({"computeReservation": 100}, "computeReservation"),
        ({"shareDistribution": [{"shareIdentifier": "a", "weightFactor": 0}]}, "weightFactor"),
        ({"shareDistribution": [{"shareIdentifier": "a", "weightFactor": 1000}]}, "weightFactor"),
        ({"shareDistribution": [{"shareIdentifier": "x" * 256}]}, "shareIdentifier"),
        ({"shareDistribution": [{"shareIdentifier": "a*b"}]}, "a*b"),
        ({"shareDistribution": [{"shareIdentifier": "UserA*"}, {"shareIdentifier": "UserA1"}]}, "overlap"),
        ({"shareDistribution": [{"shareIdentifier": "UserA1*"}, {"shareIdentifier": "UserA*"}]}, "overlap"),
        ({"shareDistribution": [{"shareIdentifier": "UserA"}, {"shareIdentifier": "UserA*"}]}, "overlap"),
        ({"shareDistribution": [{"shareIdentifier": "dup"}, {"shareIdentifier": "dup"}]}, "twice"),
    ],
)
def test_fairshare_validation(batch, unique, policy, words):
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_scheduling_policy(name=unique("sp"), fairsharePolicy=policy)
    assert words in client_error(exc)


def test_valid_edges(batch, unique):
    policy = {
        "shareDecaySeconds": 604800,
        "computeReservation": 99,
        "shareDistribution": [
            {"shareIdentifier": "x" * 255, "weightFactor": 0.0001},
            {"shareIdentifier": "UserA*", "weightFactor": 999.9999},
            {"shareIdentifier": "UserB1"},
            {"shareIdentifier": "UserB2*"},
        ],
    }
    arn = batch.create_scheduling_policy(name=unique("sp"), fairsharePolicy=policy)["arn"]
    assert describe(batch, arn)["fairsharePolicy"] == policy


def test_quota_share_policy_type_is_fixed(batch, unique):
    arn = batch.create_scheduling_policy(
        name=unique("sp"), quotaSharePolicy={"idleResourceAssignmentStrategy": "FIFO"}
    )["arn"]
    assert describe(batch, arn)["quotaSharePolicy"] == {"idleResourceAssignmentStrategy": "FIFO"}
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.update_scheduling_policy(arn=arn, fairsharePolicy={"shareDecaySeconds": 1})
    assert "can't change" in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException):
        batch.create_scheduling_policy(
            name=unique("sp"), fairsharePolicy={}, quotaSharePolicy={"idleResourceAssignmentStrategy": "FIFO"}
        )


def test_attached_policy_cannot_be_deleted(batch, unique):
    arn = batch.create_scheduling_policy(name=unique("sp"))["arn"]
    ce = unique("ce")
    batch.create_compute_environment(computeEnvironmentName=ce, type="UNMANAGED", unmanagedvCpus=1)
    queue = unique("q")
    batch.create_job_queue(
        jobQueueName=queue,
        priority=1,
        schedulingPolicyArn=arn,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
    )
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.delete_scheduling_policy(arn=arn)
    assert queue in client_error(exc)


def test_list_pages_and_cli(make_server):
    srv = make_server()
    batch = srv.client()
    arns = [batch.create_scheduling_policy(name=f"p{i}")["arn"] for i in range(5)]
    first = batch.list_scheduling_policies(maxResults=2)
    assert first["schedulingPolicies"] == [{"arn": arns[0]}, {"arn": arns[1]}]
    pages = list(batch.get_paginator("list_scheduling_policies").paginate(PaginationConfig={"PageSize": 2}))
    assert [p["arn"] for page in pages for p in page["schedulingPolicies"]] == arns
    assert "nextToken" not in pages[-1]
    with pytest.raises(batch.exceptions.ClientException):
        batch.list_scheduling_policies(nextToken="bogus")
    out = srv.aws("batch", "list-scheduling-policies")
    assert [p["arn"] for p in out["schedulingPolicies"]] == arns
    out = srv.aws("batch", "describe-scheduling-policies", "--arns", arns[0])
    assert out["schedulingPolicies"][0]["name"] == "p0"
