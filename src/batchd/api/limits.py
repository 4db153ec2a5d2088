"""The limits AWS documents but the botocore model does not encode, as one declarative table (`LIMITS`).

Keyed by (operation or shape name, member path relative to it); `validate.py` compiles the rows into each
operation's validator, and docs/api-validation.md carries the table as `limits_table_markdown()` renders it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """A bound read from `_SETTINGS` at validation time instead of being fixed at compile time."""

    name: str


@dataclass(frozen=True)
class Limit:
    """Documented constraints on one member. Lengths apply to strings, lists and maps; values to numbers."""

    min_len: int | None = None
    max_len: int | None = None
    min_value: float | Setting | None = None
    max_value: float | None = None
    # Full-match regular expression, and the words used in the error message.
    pattern: str | None = None
    pattern_text: str | None = None
    # A reserved prefix (compared case-insensitively when prefix_ci).
    forbid_prefix: str | None = None
    prefix_ci: bool = False
    # Compare enum values case-insensitively (EvaluateOnExit.action: "The values aren't case sensitive").
    enum_ci: bool = False
    # The value must be an AWS Batch resource ARN.
    arn: bool = False
    # The member must be given (and not null) although the model leaves it optional.
    required: bool = False
    # A string holding a plain decimal number within these bounds (decode.decimal_ok), and its message words.
    decimal: tuple[float, float] | None = None
    decimal_text: str = ""
    # Where the limit comes from, for docs/api-validation.md.
    source: str = ""

    def describe(self) -> str:
        """One line for the limits table in docs/api-validation.md."""
        parts: list[str] = []
        if self.min_len is not None or self.max_len is not None:
            parts.append(f"length {_span(self.min_len, self.max_len)}")
        if self.min_value is not None or self.max_value is not None:
            parts.append(f"value {_span(self.min_value, self.max_value)}")
        if self.pattern:
            parts.append(f"must {self.pattern_text} (`{self.pattern}`)")
        if self.forbid_prefix:
            parts.append(
                f"must not start with `{self.forbid_prefix}`" + (" (any case)" if self.prefix_ci else "")
            )
        if self.enum_ci:
            parts.append("enum compared case-insensitively")
        if self.arn:
            parts.append("must be an AWS Batch resource ARN")
        if self.required:
            parts.append("required")
        if self.decimal:
            parts.append(f"a decimal number {_span(*self.decimal)} ({self.decimal_text})")
        return "; ".join(parts)


def _span(lo: float | Setting | None, hi: float | None) -> str:
    low = f"setting `{lo.name}`" if isinstance(lo, Setting) else lo
    if lo is None:
        return f"≤ {hi}"
    if hi is None:
        return f"≥ {low}"
    return f"{low}–{hi}"


def limits_table_markdown() -> str:
    """The LIMITS table as the markdown rows docs/api-validation.md carries (a test keeps the two in sync)."""
    rows = ["| applies to | member path | constraint | source |", "|---|---|---|---|"]
    for (scope, path), limit in LIMITS.items():
        text = limit.describe().replace("|", "\\|")  # a `|` inside a regex would split the cell
        rows.append(f"| `{scope}` | `{path or '(the shape itself)'}` | {text} | {limit.source} |")
    return "\n".join(rows) + "\n"


_NAME = Limit(
    min_len=1,
    max_len=128,
    pattern=r"[A-Za-z0-9_-]+",
    pattern_text="contain only letters, numbers, hyphens (-) and underscores (_)",
    source="model doc",
)
_JOB_NAME = Limit(
    min_len=1,
    max_len=128,
    pattern=r"[A-Za-z0-9][A-Za-z0-9_-]*",
    pattern_text="start with a letter or number and contain only letters, numbers, hyphens (-) and underscores (_)",
    source="model doc",
)
_REASON = Limit(min_len=1, max_len=1024, source="model doc")
_PRIORITY_9999 = Limit(min_value=0, max_value=9999, source="model doc")
_PAGE_100 = Limit(min_value=1, max_value=100, source="model doc")
_LIST_100 = Limit(max_len=100, source="model doc")
_BULK_50 = Limit(max_len=50, source="model doc (up to 50; no minimum)")
_ENV_NAME = Limit(
    forbid_prefix="AWS_BATCH", source="model doc: Environment variables cannot start with AWS_BATCH"
)
_GLOB_TEXT = Limit(
    max_len=512,
    pattern=r"[A-Za-z0-9.: \t]*\*?",
    pattern_text="contain only letters, numbers, periods (.), colons (:) and white space, optionally ending in *",
    source="model doc",
)
_GLOB_EXIT_CODE = Limit(
    min_len=1,
    max_len=512,
    pattern=r"[0-9]*\*?",
    pattern_text="contain only digits, optionally ending in *",
    source="model doc",
)
_ENUM_CI = Limit(enum_ci=True, source="model doc: The values aren't case sensitive")

# (operation or shape name, path relative to it) -> Limit. Paths use `.` between members, `[]` for list items,
# `{}` for map values; "" is the shape itself. Shape-keyed rows apply wherever that shape occurs.
LIMITS: dict[tuple[str, str], Limit] = {
    # Resource and job names.
    ("CreateComputeEnvironment", "computeEnvironmentName"): _NAME,
    ("CreateJobQueue", "jobQueueName"): _NAME,
    ("RegisterJobDefinition", "jobDefinitionName"): _NAME,
    ("CreateSchedulingPolicy", "name"): _NAME,
    ("CreateServiceEnvironment", "serviceEnvironmentName"): _NAME,
    ("CreateQuotaShare", "quotaShareName"): _NAME,
    ("SubmitJob", "jobName"): _JOB_NAME,
    ("SubmitServiceJob", "jobName"): _NAME,
    # SubmitJob.
    ("ArrayProperties", "size"): Limit(min_value=2, max_value=10000, source="model doc, service quotas"),
    ("SubmitJob", "dependsOn"): Limit(max_len=20, source="model doc, service quotas"),
    ("SubmitJob", "schedulingPriorityOverride"): _PRIORITY_9999,
    ("SubmitJob", "shareIdentifier"): Limit(min_len=1, max_len=255, source="model doc"),
    ("RegisterJobDefinition", "schedulingPriority"): _PRIORITY_9999,
    ("SubmitServiceJob", "schedulingPriority"): _PRIORITY_9999,
    ("UpdateServiceJob", "schedulingPriority"): _PRIORITY_9999,
    ("SubmitServiceJob", "shareIdentifier"): Limit(min_len=1, max_len=255, source="model doc"),
    # Retries and timeouts.
    ("RetryStrategy", "attempts"): Limit(min_value=1, max_value=10, source="model doc"),
    ("RetryStrategy", "evaluateOnExit"): Limit(max_len=5, source="model doc"),
    ("EvaluateOnExit", "onStatusReason"): _GLOB_TEXT,
    ("EvaluateOnExit", "onReason"): _GLOB_TEXT,
    ("EvaluateOnExit", "onExitCode"): _GLOB_EXIT_CODE,
    ("EvaluateOnExit", "action"): _ENUM_CI,
    ("ServiceJobRetryStrategy", "attempts"): Limit(min_value=1, max_value=10, source="model doc"),
    ("ServiceJobRetryStrategy", "evaluateOnExit"): Limit(max_len=5, source="model doc"),
    ("ServiceJobEvaluateOnExit", "onStatusReason"): Limit(max_len=512, source="model doc"),
    ("ServiceJobEvaluateOnExit", "action"): _ENUM_CI,
    ("JobTimeout", "attemptDurationSeconds"): Limit(
        min_value=Setting("min_attempt_duration"), source="model doc (60; server setting)"
    ),
    # Environment variables: the AWS_BATCH prefix is reserved.
    ("ContainerProperties", "environment[].name"): _ENV_NAME,
    ("ContainerOverrides", "environment[].name"): _ENV_NAME,
    ("TaskContainerProperties", "environment[].name"): _ENV_NAME,
    ("TaskContainerOverrides", "environment[].name"): _ENV_NAME,
    ("EksContainer", "env[].name"): _ENV_NAME,
    ("EksContainerOverride", "env[].name"): _ENV_NAME,
    # Members batchd needs that the model leaves optional, and numbers the API carries as strings (parsed and
    # bounded here, so that no handler meets "1e30", "inf" or 5000 digits).
    ("KeyValuePair", "name"): Limit(required=True, source="batchd: an environment variable needs a name"),
    ("ResourceRequirement", "value"): Limit(
        decimal=(0, 2**31 - 1),
        decimal_text="the VCPU, MEMORY or GPU amount",
        source="AWS docs (ResourceRequirement value); bound: batchd (a 32-bit count)",
    ),
    ("NodeRangeProperty", "targetNodes"): Limit(
        max_len=21,
        pattern=r"[0-9]{0,10}(?::[0-9]{0,10})?",
        pattern_text="be N, N:M, :M or N: (node indexes of at most 10 digits)",
        source="model doc",
    ),
    ("ListJobs", "filters[].values[]"): Limit(
        max_len=1024, source="batchd: longer than any job name, job definition ARN or share identifier"
    ),
    # Job queues.
    ("CreateJobQueue", "priority"): Limit(
        min_value=0, max_value=1000, source="AWS docs (CreateJobQueue priority)"
    ),
    ("UpdateJobQueue", "priority"): Limit(
        min_value=0, max_value=1000, source="AWS docs (CreateJobQueue priority)"
    ),
    ("CreateJobQueue", "computeEnvironmentOrder"): Limit(max_len=3, source="model doc, service quotas"),
    ("UpdateJobQueue", "computeEnvironmentOrder"): Limit(max_len=3, source="model doc, service quotas"),
    ("JobStateTimeLimitAction", "maxTimeSeconds"): Limit(
        min_value=Setting("min_state_time_limit"), max_value=86400, source="model doc (600; server setting)"
    ),
    # Scheduling policies.
    ("FairsharePolicy", "shareDecaySeconds"): Limit(min_value=0, max_value=604800, source="model doc"),
    ("FairsharePolicy", "computeReservation"): Limit(min_value=0, max_value=99, source="model doc"),
    ("ShareAttributes", "weightFactor"): Limit(min_value=0.0001, max_value=999.9999, source="model doc"),
    ("ShareAttributes", "shareIdentifier"): Limit(
        min_len=1,
        max_len=255,
        pattern=r"[^*]+\*?|\*",
        pattern_text="use * only as the last character",
        source="model doc",
    ),
    # Cancel / terminate.
    ("CancelJob", "reason"): _REASON,
    ("TerminateJob", "reason"): _REASON,
    ("CancelJobs", "reason"): _REASON,
    ("TerminateJobs", "reason"): _REASON,
    ("TerminateServiceJob", "reason"): _REASON,
    ("TerminateServiceJobs", "reason"): _REASON,
    ("CancelJobs", "jobs"): _BULK_50,
    ("TerminateJobs", "jobs"): _BULK_50,
    ("TerminateServiceJobs", "jobs"): _BULK_50,
    # Describe / list.
    ("DescribeJobs", "jobs"): _LIST_100,
    ("DescribeJobQueues", "jobQueues"): _LIST_100,
    ("DescribeComputeEnvironments", "computeEnvironments"): _LIST_100,
    ("DescribeJobDefinitions", "jobDefinitions"): _LIST_100,
    ("DescribeSchedulingPolicies", "arns"): _LIST_100,
    ("DescribeJobQueues", "maxResults"): _PAGE_100,
    ("DescribeComputeEnvironments", "maxResults"): _PAGE_100,
    ("DescribeJobDefinitions", "maxResults"): _PAGE_100,
    ("DescribeServiceEnvironments", "maxResults"): _PAGE_100,
    ("ListSchedulingPolicies", "maxResults"): _PAGE_100,
    ("ListConsumableResources", "maxResults"): _PAGE_100,
    ("ListJobsByConsumableResource", "maxResults"): _PAGE_100,
    ("ListQuotaShares", "maxResults"): _PAGE_100,
    ("ListServiceJobs", "maxResults"): _PAGE_100,
    ("ListJobs", "maxResults"): Limit(min_value=1, max_value=1000, source="model doc"),
    # Tags (count, key and value lengths come from the model's TagrisTagsMap / TagKey / TagValue).
    ("TagKey", ""): Limit(forbid_prefix="aws:", prefix_ci=True, source="AWS tagging rules"),
    ("ListTagsForResource", "resourceArn"): Limit(arn=True, source="ARN formats"),
    ("TagResource", "resourceArn"): Limit(arn=True, source="ARN formats"),
    ("UntagResource", "resourceArn"): Limit(arn=True, source="ARN formats"),
}

# arn:<partition>:batch:<region>:<account>:<type>/<resource>; the resource part is checked per type.
_ARN_RE = re.compile(r"arn:aws(?:-[a-z]+)*:batch:[a-z]{2}(?:-[a-z]+)+-\d{1,2}:\d{12}:([a-z-]+)/(.+)")
_ARN_RESOURCE = {
    "job": re.compile(r"[A-Za-z0-9-]+(?:[:#][0-9]+)?"),
    "job-queue": re.compile(r"[A-Za-z0-9_-]{1,128}(?:/quota-share/[A-Za-z0-9_-]{1,128})?"),
    "compute-environment": re.compile(r"[A-Za-z0-9_-]{1,128}"),
    "job-definition": re.compile(r"[A-Za-z0-9_-]{1,128}(?::[0-9]+)?"),
    "scheduling-policy": re.compile(r"[A-Za-z0-9_-]{1,128}"),
    "consumable-resource": re.compile(r"[A-Za-z0-9_-]{1,128}"),
    "service-environment": re.compile(r"[A-Za-z0-9_-]{1,128}"),
    "service-job": re.compile(r"[A-Za-z0-9-]+"),
    "quota-share": re.compile(r"[A-Za-z0-9_/-]{1,256}"),
}
_ARN_TEXT = (
    "be an AWS Batch resource ARN (arn:<partition>:batch:<region>:<account>:<type>/<name>, where <type> is one "
    "of " + ", ".join(_ARN_RESOURCE) + ")"
)


def _valid_arn(text: str) -> bool:
    m = _ARN_RE.fullmatch(text)
    if m is None:
        return False
    resource = _ARN_RESOURCE.get(m.group(1))
    return resource is not None and resource.fullmatch(m.group(2)) is not None
