"""Everything the resource operations create survives a restart of `batchd serve`, including half-done changes."""

from __future__ import annotations

from conftest import wait_for

SLOW = {"BATCHD_RESOURCE_CREATE_DELAY": "3600"}  # status changes that never finish while the server runs


def snapshot(batch) -> dict:
    ces = batch.describe_compute_environments()["computeEnvironments"]
    queues = batch.describe_job_queues()["jobQueues"]
    jds = batch.describe_job_definitions()["jobDefinitions"]
    policy_arns = [p["arn"] for p in batch.list_scheduling_policies()["schedulingPolicies"]]
    policies = (
        batch.describe_scheduling_policies(arns=policy_arns)["schedulingPolicies"] if policy_arns else []
    )
    arns = (
        [c["computeEnvironmentArn"] for c in ces]
        + [q["jobQueueArn"] for q in queues]
        + [d["jobDefinitionArn"] for d in jds]
        + policy_arns
    )
    tags = {arn: batch.list_tags_for_resource(resourceArn=arn)["tags"] for arn in arns}
    return {"ces": ces, "queues": queues, "jds": jds, "policies": policies, "tags": tags}


def all_valid(batch) -> bool:
    docs = (
        batch.describe_compute_environments()["computeEnvironments"]
        + batch.describe_job_queues()["jobQueues"]
    )
    return all(d["status"] == "VALID" for d in docs)


def test_everything_survives_restart(make_server):
    srv = make_server()
    batch = srv.client()
    policy = batch.create_scheduling_policy(
        name="fair",
        tags={"p": "1"},
        fairsharePolicy={
            "shareDecaySeconds": 60,
            "shareDistribution": [{"shareIdentifier": "a*", "weightFactor": 2}],
        },
    )["arn"]
    batch.create_compute_environment(
        computeEnvironmentName="managed",
        type="MANAGED",
        tags={"c": "1"},
        computeResources={
            "type": "SPOT",
            "maxvCpus": 8,
            "bidPercentage": 50,
            "subnets": ["s"],
            "instanceTypes": ["m5"],
            "instanceRole": "ecsInstanceRole",
        },
    )
    batch.create_compute_environment(
        computeEnvironmentName="mine", type="UNMANAGED", unmanagedvCpus=2, state="DISABLED"
    )
    batch.create_job_queue(
        jobQueueName="q",
        priority=5,
        schedulingPolicyArn=policy,
        tags={"q": "1"},
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": "managed"},
            {"order": 2, "computeEnvironment": "mine"},
        ],
        jobStateTimeLimitActions=[
            {"reason": "r", "state": "RUNNABLE", "maxTimeSeconds": 900, "action": "CANCEL"}
        ],
    )
    for _ in range(3):
        batch.register_job_definition(
            jobDefinitionName="jd",
            type="container",
            tags={"d": "1"},
            containerProperties={"image": "busybox", "command": ["true"]},
            retryStrategy={"attempts": 2},
            parameters={"a": "b"},
        )
    batch.deregister_job_definition(jobDefinition="jd:3")
    batch.update_compute_environment(computeEnvironment="managed", computeResources={"maxvCpus": 16})
    batch.tag_resource(resourceArn=policy, tags={"added": "later"})
    wait_for(lambda: all_valid(batch), timeout=10, message="all VALID")
    before = snapshot(batch)
    assert (
        len(before["ces"]) == 2
        and len(before["jds"]) == 3
        and before["tags"][policy] == {"p": "1", "added": "later"}
    )

    srv.restart()
    batch = srv.client()
    assert snapshot(batch) == before
    # Revisions keep counting from where they were.
    assert (
        batch.register_job_definition(
            jobDefinitionName="jd", type="container", containerProperties={"image": "busybox"}
        )["revision"]
        == 4
    )
    # Pages started before the restart continue after it.
    token = batch.describe_job_definitions(maxResults=2)["nextToken"]
    srv.restart()
    batch = srv.client()
    rest = batch.describe_job_definitions(maxResults=2, nextToken=token)["jobDefinitions"]
    assert [d["revision"] for d in rest] == [3, 4]


def test_unfinished_changes_complete_at_start(make_server):
    srv = make_server(env=SLOW)
    batch = srv.client()
    batch.create_compute_environment(computeEnvironmentName="ce", type="UNMANAGED", unmanagedvCpus=1)
    batch.create_compute_environment(
        computeEnvironmentName="old", type="UNMANAGED", unmanagedvCpus=1, state="DISABLED"
    )
    batch.create_job_queue(
        jobQueueName="q", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}]
    )
    batch.create_job_queue(
        jobQueueName="gone",
        priority=1,
        state="DISABLED",
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "ce"}],
    )
    statuses = {
        c["computeEnvironmentName"]: c["status"]
        for c in batch.describe_compute_environments()["computeEnvironments"]
    }
    assert statuses == {"ce": "CREATING", "old": "CREATING"}
    batch.update_job_queue(jobQueue="q", priority=9)
    batch.delete_job_queue(jobQueue="gone")
    batch.delete_compute_environment(computeEnvironment="old")
    queues = {q["jobQueueName"]: q["status"] for q in batch.describe_job_queues()["jobQueues"]}
    assert queues == {"q": "UPDATING", "gone": "DELETING"}

    srv.stop()
    srv.env.pop("BATCHD_RESOURCE_CREATE_DELAY")
    srv.start(port=srv.port)
    batch = srv.client()
    # Completed at start, before any timer could have fired.
    ces = batch.describe_compute_environments()["computeEnvironments"]
    assert [(c["computeEnvironmentName"], c["status"], c["statusReason"]) for c in ces] == [
        ("ce", "VALID", "ComputeEnvironment Healthy")
    ]
    queues = batch.describe_job_queues()["jobQueues"]
    assert [(q["jobQueueName"], q["status"], q["priority"]) for q in queues] == [("q", "VALID", 9)]


def test_killed_server_keeps_committed_resources(make_server):
    import signal

    srv = make_server()
    batch = srv.client()
    batch.create_scheduling_policy(name="p")
    batch.register_job_definition(
        jobDefinitionName="jd", type="container", containerProperties={"image": "x"}
    )  # answered, so committed: nothing to wait for before the kill
    srv.stop(sig=signal.SIGKILL)
    srv.start(port=srv.port)
    batch = srv.client()
    assert [p["arn"].rsplit("/", 1)[1] for p in batch.list_scheduling_policies()["schedulingPolicies"]] == [
        "p"
    ]
    assert batch.describe_job_definitions(jobDefinitions=["jd:1"])["jobDefinitions"][0]["status"] == "ACTIVE"
