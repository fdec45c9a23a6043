"""Builders for least-privilege IAM documents from ARNs that may still be Outputs.

Every statement names its resources. ``unscoped`` is the one way to write ``"Resource": "*"`` and
demands the reason (the action has no resource-level permissions), which the policy linter checks.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pulumi

if TYPE_CHECKING:
    from shared.context import AwsContext

Statement = dict[str, Any]


def deny_insecure_transport(service: str, resources: pulumi.Input[str] | Sequence[pulumi.Input[str]]) -> Statement:
    """The resource-policy statement that refuses every action of ``service`` (``sqs``, ``sns``, ``s3``) sent
    without TLS: every action, not only the writes (issue 8)."""
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": f"{service}:*",
            "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def allow(
    actions: Sequence[str],
    resources: Sequence[pulumi.Input[str]],
    *,
    sid: str | None = None,
    conditions: Mapping[str, Mapping[str, Any]] | None = None,
) -> Statement:
    if not actions:
        raise ValueError("a statement needs at least one action")
    if not resources:
        raise ValueError(f"statement for {list(actions)} names no resources; use unscoped() if none exist")
    if any(a == "*" or a.endswith(":*") for a in actions):
        raise ValueError(f"wildcard service actions are not allowed: {list(actions)}")
    statement: Statement = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": list(resources)}
    if sid:
        statement["Sid"] = sid
    if conditions:
        statement["Condition"] = {op: dict(kv) for op, kv in conditions.items()}
    return statement


def unscoped(actions: Sequence[str], *, why: str, sid: str | None = None,
             conditions: Mapping[str, Mapping[str, Any]] | None = None) -> Statement:
    """A statement on ``"Resource": "*"`` for actions that have no resource-level permissions."""
    if not why.strip():
        raise ValueError("unscoped statements must say why the actions cannot be scoped")
    statement: Statement = {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": "*"}
    if sid:
        statement["Sid"] = sid
    if conditions:
        statement["Condition"] = {op: dict(kv) for op, kv in conditions.items()}
    return statement


def document(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """A policy document as JSON text; Output ARNs inside are resolved."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_trust_policy(*services: str, source_account: pulumi.Input[str] | None = None) -> pulumi.Output[str]:
    """Trust policy for AWS service principals such as ``lambda.amazonaws.com``."""
    statement: Statement = {
        "Effect": "Allow",
        "Principal": {"Service": sorted(services)},
        "Action": "sts:AssumeRole",
    }
    if source_account is not None:
        # Confused-deputy guard: only this account's resources may make the service assume the role.
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return document([statement])


def objects_in(bucket_arn: pulumi.Input[str], prefix: str = "") -> pulumi.Output[str]:
    """The object ARN pattern ``<bucket-arn>/<prefix>*``."""
    return pulumi.Output.concat(bucket_arn, "/", prefix, "*")


def key_use(actions: Sequence[str], key_arns: Sequence[pulumi.Input[str]], *, region: pulumi.Input[str],
            via: Sequence[str], sid: str | None = None) -> Statement:
    """Use of KMS keys only through the named services (``kms:ViaService``), e.g. ``via=("s3", "sqs")``:
    a role that reads encrypted objects then cannot call Decrypt on the key directly with stolen ciphertext."""
    if not via:
        raise ValueError("key_use needs at least one service in via; grant direct key use with allow()")
    bad = [a for a in actions if not a.startswith("kms:")]
    if bad:
        raise ValueError(f"key_use takes KMS actions only, got {bad}")
    services = sorted(set(via))
    endpoints = pulumi.Output.from_input(region).apply(lambda r: [f"{s}.{r}.amazonaws.com" for s in services])
    return allow(actions, key_arns, sid=sid, conditions={"StringEquals": {"kms:ViaService": endpoints}})


_ROLE_NAME = r"[A-Za-z0-9_+=,.@-]{1,64}"
_ROLE_PATH = r"(?:[\x21-\x2e\x30-\x7e]+/)*"


def check_account_role_arn(arn: Any, partition: str, account_id: str, source: str) -> str:
    """``arn`` when it is an IAM role of ``account_id`` in ``partition`` (not a service-linked role);
    ValueError naming ``source`` otherwise. For ARNs that come from outside the stack (a StackReference)
    before they go into a resource policy."""
    pattern = rf"arn:{re.escape(partition)}:iam::{re.escape(account_id)}:role/{_ROLE_PATH}{_ROLE_NAME}"
    if (not isinstance(arn, str) or not re.fullmatch(pattern, arn) or "*" in arn or "?" in arn
            or arn.split(":", 5)[5].startswith(("role/aws-service-role/", "role/aws-reserved/"))):
        raise ValueError(f"{source}: {arn!r} is not an IAM role of account {account_id} "
                         f"(expected arn:{partition}:iam::{account_id}:role/<name>); refusing to grant it access")
    return arn


def account_role_arn(arn: pulumi.Input[str], ctx: "AwsContext", *, source: str) -> pulumi.Output[str]:
    """``arn`` checked by check_account_role_arn once it resolves; the program fails if it does not pass."""
    return pulumi.Output.all(arn, ctx.partition, ctx.account_id).apply(
        lambda v: check_account_role_arn(v[0], v[1], v[2], source))


# Actions that have no resource-level permissions, used with unscoped(); the linter checks each
# unscoped action against this list.
NO_RESOURCE_LEVEL_ACTIONS = frozenset({
    "cloudwatch:PutMetricData",          # scoped by the cloudwatch:namespace condition instead
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ec2:DescribeInstances",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2messages:GetMessages",
    "logs:DescribeLogGroups",
    # Training workflow (issue 9): Step Functions log delivery, X-Ray sampling, SageMaker jobs' ECR
    # login and VPC look-ups.
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "ecr:GetAuthorizationToken",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
})
