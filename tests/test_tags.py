"""TagResource / UntagResource / ListTagsForResource on every taggable kind, through boto3 and the aws CLI."""

from __future__ import annotations

import pytest

PREFIX = "arn:aws:batch:us-east-1:123456789012"


def client_error(excinfo) -> str:
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Message"]


def make_all(batch, unique) -> dict[str, str]:
    """One tagged resource of each kind; returns kind -> ARN."""
    ce = batch.create_compute_environment(
        computeEnvironmentName=unique("ce"), type="UNMANAGED", unmanagedvCpus=1, tags={"kind": "ce"}
    )["computeEnvironmentArn"]
    sp = batch.create_scheduling_policy(name=unique("sp"), tags={"kind": "sp"})["arn"]
    jq = batch.create_job_queue(
        jobQueueName=unique("q"),
        priority=1,
        tags={"kind": "jq"},
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
    )["jobQueueArn"]
    jd = batch.register_job_definition(
        jobDefinitionName=unique("jd"),
        type="container",
        tags={"kind": "jd"},
        containerProperties={"image": "busybox"},
    )["jobDefinitionArn"]
    return {"ce": ce, "sp": sp, "jq": jq, "jd": jd}


def describe_tags(batch, kind: str, arn: str) -> dict:
    if kind == "ce":
        return batch.describe_compute_environments(computeEnvironments=[arn])["computeEnvironments"][0][
            "tags"
        ]
    if kind == "jq":
        return batch.describe_job_queues(jobQueues=[arn])["jobQueues"][0]["tags"]
    if kind == "sp":
        return batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"][0]["tags"]
    return batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"][0]["tags"]


def test_tag_untag_list_every_kind(batch, unique):
    for kind, arn in make_all(batch, unique).items():
        assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {"kind": kind}
        batch.tag_resource(resourceArn=arn, tags={"kind": "changed", "extra": "1", "empty": ""})
        want = {"kind": "changed", "extra": "1", "empty": ""}
        assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == want
        assert describe_tags(batch, kind, arn) == want
        batch.untag_resource(resourceArn=arn, tagKeys=["extra", "not-there"])
        assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {"kind": "changed", "empty": ""}
        assert describe_tags(batch, kind, arn) == {"kind": "changed", "empty": ""}


def test_job_tags_and_child_arns(batch, unique):
    arns = make_all(batch, unique)
    job = batch.submit_job(
        jobName="tagged",
        jobQueue=arns["jq"],
        jobDefinition=arns["jd"],
        tags={"a": "1"},
        arrayProperties={"size": 2},
    )
    job_arn = job["jobArn"]
    assert job_arn == f"{PREFIX}:job/{job['jobId']}"
    assert batch.list_tags_for_resource(resourceArn=job_arn)["tags"] == {"a": "1"}
    batch.tag_resource(resourceArn=job_arn, tags={"b": "2"})
    batch.untag_resource(resourceArn=job_arn, tagKeys=["a"])
    assert batch.list_tags_for_resource(resourceArn=job_arn)["tags"] == {"b": "2"}
    assert batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]["tags"] == {"b": "2"}
    for child in (f"{job_arn}:0", f"{job_arn}#1"):
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.tag_resource(resourceArn=child, tags={"x": "y"})
        # Refused either by the request validator (not a taggable ARN form) or by the handler (child job).
        message = client_error(exc)
        assert "child jobs" in message or "ARN" in message
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.list_tags_for_resource(resourceArn=f"{PREFIX}:job/00000000-0000-0000-0000-000000000000")
    assert "not found" in client_error(exc)


@pytest.mark.parametrize(
    "arn",
    [
        f"{PREFIX}:job-queue/does-not-exist",
        f"{PREFIX}:compute-environment/does-not-exist",
        f"{PREFIX}:job-definition/does-not-exist:1",
        f"{PREFIX}:scheduling-policy/does-not-exist",
    ],
)
def test_unknown_arns(batch, arn):
    for call in (
        lambda: batch.list_tags_for_resource(resourceArn=arn),
        lambda: batch.tag_resource(resourceArn=arn, tags={"a": "b"}),
        lambda: batch.untag_resource(resourceArn=arn, tagKeys=["a"]),
    ):
        with pytest.raises(batch.exceptions.ClientException) as exc:
            call()
        assert "not found" in client_error(exc)


def test_foreign_and_malformed_arns(server, batch, unique):
    arns = make_all(batch, unique)
    other_account = arns["jq"].replace("123456789012", "999999999999")
    other_region = arns["jq"].replace("us-east-1", "eu-west-1")
    for arn in (other_account, other_region):
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.list_tags_for_resource(resourceArn=arn)
        assert "not found" in client_error(exc)
    # The same queue seen from another region does not exist either.
    west = server.client(region="us-west-2")
    with pytest.raises(west.exceptions.ClientException):
        west.list_tags_for_resource(resourceArn=arns["jq"])
    jd_without_revision = arns["jd"].rsplit(":", 1)[0]
    with pytest.raises(batch.exceptions.ClientException):
        batch.list_tags_for_resource(resourceArn=jd_without_revision)
    for bad in (
        "not-an-arn",
        "arn:aws:s3:::bucket",
        f"{PREFIX}:thing/x",
        "arn:aws:batch:us-east-1:12:job-queue/q",
    ):
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.list_tags_for_resource(resourceArn=bad)
        assert "ARN" in client_error(exc)


def test_tag_limits(server, batch, unique):
    arn = make_all(batch, unique)["sp"]
    raw = server.client(parameter_validation=False)
    cases = [
        ({"aws:owner": "x"}, "aws:"),
        ({"AWS:owner": "x"}, "aws:"),
        ({"k" * 129: "x"}, "128"),
        ({"k": "v" * 257}, "256"),
        ({f"k{i}": "v" for i in range(51)}, "50"),
    ]
    for tags, words in cases:
        with pytest.raises(raw.exceptions.ClientException) as exc:
            raw.tag_resource(resourceArn=arn, tags=tags)
        assert words in client_error(exc), tags
    # 49 more on top of the one it has: 50 is fine, 51 is not.
    batch.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(49)})
    assert len(batch.list_tags_for_resource(resourceArn=arn)["tags"]) == 50
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.tag_resource(resourceArn=arn, tags={"one-more": "v"})
    assert "50" in client_error(exc)
    batch.tag_resource(resourceArn=arn, tags={"k0": "overwrite is not a new tag"})
    with pytest.raises(raw.exceptions.ClientException):
        raw.tag_resource(resourceArn=arn, tags={})
    with pytest.raises(raw.exceptions.ClientException):
        raw.untag_resource(resourceArn=arn, tagKeys=[])


def test_tags_go_with_the_resource(batch, unique):
    arn = batch.create_scheduling_policy(name=unique("sp"), tags={"a": "b"})["arn"]
    batch.delete_scheduling_policy(arn=arn)
    with pytest.raises(batch.exceptions.ClientException):
        batch.list_tags_for_resource(resourceArn=arn)
    # A re-created policy of the same name starts without the old tags.
    batch.create_scheduling_policy(name=arn.rsplit("/", 1)[1])
    assert batch.list_tags_for_resource(resourceArn=arn)["tags"] == {}


def test_aws_cli(server, unique):
    batch = server.client()
    arn = make_all(batch, unique)["jd"]  # a job-definition ARN has a ':' in the path part
    server.aws("batch", "tag-resource", "--resource-arn", arn, "--tags", "x=1,y=2")
    assert server.aws("batch", "list-tags-for-resource", "--resource-arn", arn)["tags"] == {
        "kind": "jd",
        "x": "1",
        "y": "2",
    }
    server.aws("batch", "untag-resource", "--resource-arn", arn, "--tag-keys", "x", "kind")
    assert server.aws("batch", "list-tags-for-resource", "--resource-arn", arn)["tags"] == {"y": "2"}
    err = server.aws(
        "batch", "list-tags-for-resource", "--resource-arn", f"{PREFIX}:job-queue/nope", check=False
    )
    assert "ClientException" in err
