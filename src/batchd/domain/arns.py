"""ARNs and names, as AWS Batch forms them. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):batch:([a-z0-9-]+):(\d{12}):([a-z-]+)/(.+)$")

RESOURCE_TYPES = ("compute-environment", "job-queue", "job-definition", "scheduling-policy", "job")


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def make_arn(region: str, account: str, resource_type: str, name: str) -> str:
    return f"arn:{partition_for(region)}:batch:{region}:{account}:{resource_type}/{name}"


@dataclass(frozen=True)
class Arn:
    partition: str
    region: str
    account: str
    resource_type: str
    resource: str


def parse_arn(text: str) -> Arn | None:
    m = ARN_RE.match(text)
    if not m or m.group(4) not in RESOURCE_TYPES:
        return None
    return Arn(m.group(1), m.group(2), m.group(3), m.group(4), m.group(5))


def valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(NAME_RE.match(name))

