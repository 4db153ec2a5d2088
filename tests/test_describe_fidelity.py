"""Describe* answers shaped as AWS's: the defaults AWS fills in, the fields it never adds, its casing.

Infrastructure tools (Terraform's AWS provider, CloudFormation) compare what they registered with what Describe
returns; each test here pins one default or normalisation that such a tool relies on (the evidence for each is
named in docs/resources.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from jobkit import make_queue, wait_status, wait_valid

EC2 = {"type": "EC2", "maxvCpus": 4, "subnets": ["subnet-1"], "instanceRole": "ecsInstanceRole"}
EKS_CONFIG = {"eksClusterArn": "arn:aws:eks:us-east-1:123456789012:cluster/c", "kubernetesNamespace": "batch"}


def client_error(excinfo: Any) -> str:
    err = excinfo.value.response["Error"]
    assert err["Code"] == "ClientException", err
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err["Message"]


def register(batch: Any, unique: Any, **kw: Any) -> dict[str, Any]:
    """Register a container job definition and return what DescribeJobDefinitions says of it."""
    arn = batch.register_job_definition(jobDefinitionName=unique("jd"), type=kw.pop("type", "container"),
                                        **kw)["jobDefinitionArn"]
    (doc,) = batch.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    return doc


def create_ce(batch: Any, unique: Any, **kw: Any) -> dict[str, Any]:
    arn = batch.create_compute_environment(computeEnvironmentName=unique("ce"), **kw)["computeEnvironmentArn"]
    (doc,) = batch.describe_compute_environments(computeEnvironments=[arn])["computeEnvironments"]
    return doc


# --- job definitions -------------------------------------------------------------------------------------------


def test_container_without_command_describes_an_empty_command(batch, unique):
    doc = register(batch, unique, containerProperties={"image": "busybox"})
    assert doc["containerProperties"] == {
        "image": "busybox", "command": [], "volumes": [], "environment": [], "mountPoints": [], "ulimits": [],
        "resourceRequirements": [], "secrets": [],
    }


def test_evaluate_on_exit_action_comes_back_lower_case(batch, unique):
    rules = [{"action": "RETRY", "onExitCode": "1"}, {"action": "Exit", "onReason": "*"}]
    doc = register(batch, unique, containerProperties={"image": "busybox", "command": ["true"]},
                   retryStrategy={"attempts": 2, "evaluateOnExit": rules})
    assert doc["retryStrategy"] == {"attempts": 2, "evaluateOnExit": [
        {"action": "retry", "onExitCode": "1"}, {"action": "exit", "onReason": "*"}]}


def test_platform_capabilities_only_when_given(batch, unique):
    plain = register(batch, unique, containerProperties={"image": "busybox"})
    assert "platformCapabilities" not in plain
    ec2 = register(batch, unique, containerProperties={"image": "busybox"}, platformCapabilities=["EC2"])
    assert ec2["platformCapabilities"] == ["EC2"]
    nodes = register(batch, unique, type="multinode", nodeProperties={
        "numNodes": 1, "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0", "container": {"image": "busybox"}}]})
    assert "platformCapabilities" not in nodes


def test_environment_entries_without_a_value_are_dropped(batch, unique):
    env = [{"name": "EMPTY", "value": ""}, {"name": "KEPT", "value": "v"}, {"name": "NOVALUE"}]
    doc = register(batch, unique, containerProperties={"image": "busybox", "environment": env})
    assert doc["containerProperties"]["environment"] == [{"name": "KEPT", "value": "v"}]


def test_fargate_definition_gets_the_default_platform_version(batch, unique):
    reqs = [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}]
    doc = register(batch, unique, platformCapabilities=["FARGATE"],
                   containerProperties={"image": "busybox", "resourceRequirements": reqs})
    assert doc["containerProperties"]["fargatePlatformConfiguration"] == {"platformVersion": "LATEST"}
    assert "networkConfiguration" not in doc["containerProperties"]
    given = register(batch, unique, platformCapabilities=["FARGATE"], containerProperties={
        "image": "busybox", "resourceRequirements": reqs,
        "fargatePlatformConfiguration": {"platformVersion": "1.4.0"}})
    assert given["containerProperties"]["fargatePlatformConfiguration"] == {"platformVersion": "1.4.0"}
    ec2 = register(batch, unique, containerProperties={"image": "busybox"})
    assert "fargatePlatformConfiguration" not in ec2["containerProperties"]


def test_eks_containers_get_empty_lists(batch, unique):
    container = {"name": "main", "image": "busybox", "env": [{"name": "E", "value": ""}, {"name": "F", "value": "1"}]}
    doc = register(batch, unique, eksProperties={"podProperties": {"containers": [container]}})
    assert doc["eksProperties"] == {"podProperties": {
        "containers": [{"name": "main", "image": "busybox", "command": [], "args": [],
                        "env": [{"name": "F", "value": "1"}], "volumeMounts": []}],
        "initContainers": [], "imagePullSecrets": [], "volumes": []}}
    assert "platformCapabilities" not in doc and doc["containerOrchestrationType"] == "EKS"


def test_node_ranges_get_instance_types_and_container_lists(batch, unique):
    doc = register(batch, unique, type="multinode", nodeProperties={
        "numNodes": 2, "mainNode": 0,
        "nodeRangeProperties": [{"targetNodes": "0:", "container": {"image": "busybox", "vcpus": 1, "memory": 64}}]})
    (rng,) = doc["nodeProperties"]["nodeRangeProperties"]
    assert rng["instanceTypes"] == []
    assert rng["container"]["command"] == [] and rng["container"]["environment"] == []


# --- jobs of an eksProperties definition -----------------------------------------------------------------------


def eks_queue(batch: Any, unique: Any) -> str:
    ce = batch.create_compute_environment(computeEnvironmentName=unique("ce"), type="MANAGED",
                                          computeResources=EC2, eksConfiguration=EKS_CONFIG)["computeEnvironmentArn"]
    wait_valid(batch, "ce", ce)
    return make_queue(batch, [ce])


def test_describe_jobs_shows_eks_properties_with_the_override(batch, unique):
    queue = eks_queue(batch, unique)
    pod = {"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c"], "args": ["exit 3"],
                           "env": [{"name": "A", "value": "1"}],
                           "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}],
           "metadata": {"labels": {"team": "a"}}}
    jd = batch.register_job_definition(jobDefinitionName=unique("jd"), type="container",
                                       eksProperties={"podProperties": pod})["jobDefinitionArn"]
    override = {"podProperties": {"containers": [{"name": "main", "args": ['test "$A$B" = 12'],
                                                  "env": [{"name": "B", "value": "2"}]}],
                                  "metadata": {"labels": {"run": "x"}}}}
    job = batch.submit_job(jobName="eks", jobQueue=queue, jobDefinition=jd, eksPropertiesOverride=override)
    detail = wait_status(batch, job["jobId"], ("SUCCEEDED", "FAILED"))
    assert detail["status"] == "SUCCEEDED", detail.get("statusReason")
    assert "container" not in detail
    (container,) = detail["eksProperties"]["podProperties"]["containers"]
    assert container["command"] == ["sh", "-c"] and container["args"] == ['test "$A$B" = 12']
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert container["exitCode"] == 0
    assert detail["eksProperties"]["podProperties"]["metadata"] == {"labels": {"team": "a", "run": "x"}}
    (attempt,) = detail["eksAttempts"]
    assert attempt["containers"] == [{"name": "main", "exitCode": 0}] and attempt["stoppedAt"] >= attempt["startedAt"]
    assert detail["attempts"] == []


def test_eks_override_errors_are_client_errors(batch, unique):
    queue = eks_queue(batch, unique)
    jd = batch.register_job_definition(jobDefinitionName=unique("jd"), type="container", eksProperties={
        "podProperties": {"containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}})["jobDefinitionArn"]
    plain = batch.register_job_definition(jobDefinitionName=unique("jd"), type="container",
                                          containerProperties={"image": "busybox", "command": ["true"]})["jobDefinitionArn"]
    cases = [
        (jd, {"eksPropertiesOverride": {"podProperties": {"containers": [{"name": "other", "args": ["x"]}]}}},
         "other"),
        (jd, {"containerOverrides": {"command": ["x"]}}, "eksPropertiesOverride"),
        (plain, {"eksPropertiesOverride": {"podProperties": {"containers": [{"args": ["x"]}]}}}, "eksProperties"),
    ]
    two = batch.register_job_definition(jobDefinitionName=unique("jd"), type="container", eksProperties={
        "podProperties": {"containers": [{"name": n, "image": "busybox", "command": ["true"]} for n in "ab"]}})
    cases.append((two["jobDefinitionArn"], {}, "one container per job"))
    for definition, extra, words in cases:
        with pytest.raises(batch.exceptions.ClientException) as exc:
            batch.submit_job(jobName="bad", jobQueue=queue, jobDefinition=definition, **extra)
        assert words in client_error(exc)
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.register_job_definition(jobDefinitionName=unique("jd"), type="container", eksProperties={
            "podProperties": {"containers": [{"image": "busybox", "resources": {"limits": {"cpu": "lots"}}}]}})
    assert "cpu" in client_error(exc)


def test_job_detail_platform_capabilities_follow_the_definition(batch, unique):
    queue = eks_queue(batch, unique)  # any queue: the jobs are only described, never waited for
    plain = batch.register_job_definition(jobDefinitionName=unique("jd"), type="container",
                                          containerProperties={"image": "busybox", "command": ["true"]})
    ec2 = batch.register_job_definition(jobDefinitionName=unique("jd"), type="container", platformCapabilities=["EC2"],
                                        containerProperties={"image": "busybox", "command": ["true"]})
    ids = [batch.submit_job(jobName="p", jobQueue=queue, jobDefinition=d["jobDefinitionArn"])["jobId"]
           for d in (plain, ec2)]
    by_id = {j["jobId"]: j for j in batch.describe_jobs(jobs=ids)["jobs"]}
    assert "platformCapabilities" not in by_id[ids[0]]
    assert by_id[ids[1]]["platformCapabilities"] == ["EC2"]
    for job_id in ids:
        wait_status(batch, job_id, "SUCCEEDED")


# --- compute environments --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cr_type", ["EC2", "SPOT"])
@pytest.mark.parametrize("eks", [False, True])
def test_managed_ec2_needs_instance_role(batch, unique, cr_type, eks):
    extra = {"eksConfiguration": EKS_CONFIG} if eks else {}
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_compute_environment(computeEnvironmentName=unique("ce"), type="MANAGED", **extra,
                                         computeResources={"type": cr_type, "maxvCpus": 4, "subnets": ["s"]})
    assert "instanceRole" in client_error(exc)


@pytest.mark.parametrize("cr_type", ["EC2", "SPOT", "FARGATE", "FARGATE_SPOT"])
def test_managed_needs_subnets(batch, unique, cr_type):
    role = {"instanceRole": "ecsInstanceRole"} if cr_type in ("EC2", "SPOT") else {}
    with pytest.raises(batch.exceptions.ClientException) as exc:
        batch.create_compute_environment(computeEnvironmentName=unique("ce"), type="MANAGED",
                                         computeResources={"type": cr_type, "maxvCpus": 4, **role})
    assert "subnets" in client_error(exc)


def test_fargate_needs_no_instance_role(batch, unique):
    doc = create_ce(batch, unique, type="MANAGED", computeResources={"type": "FARGATE", "maxvCpus": 4,
                                                                      "subnets": ["s"]})
    assert doc["computeResources"] == {"type": "FARGATE", "maxvCpus": 4, "subnets": ["s"]}


def test_ec2_configuration_default(batch, unique):
    ecs = create_ce(batch, unique, type="MANAGED", computeResources=EC2)
    assert ecs["computeResources"]["ec2Configuration"] == [{"imageType": "ECS_AL2023"}]
    eks = create_ce(batch, unique, type="MANAGED", computeResources=EC2, eksConfiguration=EKS_CONFIG)
    assert eks["computeResources"]["ec2Configuration"] == [{"imageType": "EKS_AL2023"}]
    given = create_ce(batch, unique, type="MANAGED",
                      computeResources={**EC2, "ec2Configuration": [{"imageType": "ECS_AL2_NVIDIA"}]})
    assert given["computeResources"]["ec2Configuration"] == [{"imageType": "ECS_AL2_NVIDIA"}]


# --- scheduling policies ---------------------------------------------------------------------------------------


def test_policy_created_without_fairshare_describes_none(batch, unique):
    arn = batch.create_scheduling_policy(name=unique("sp"))["arn"]
    (doc,) = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"]
    assert "fairsharePolicy" not in doc and "quotaSharePolicy" not in doc
    batch.update_scheduling_policy(arn=arn, fairsharePolicy={"shareDecaySeconds": 60})
    (doc,) = batch.describe_scheduling_policies(arns=[arn])["schedulingPolicies"]
    assert doc["fairsharePolicy"] == {"shareDecaySeconds": 60, "computeReservation": 0, "shareDistribution": []}
