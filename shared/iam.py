"""Builders for least-privilege IAM documents from ARNs that may still be Outputs.

Every statement names its resources. ``unscoped`` is the one way to write ``"Resource": "*"`` and
demands the reason (the action has no resource-level permissions), which the policy linter checks.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pulumi

Statement = dict[str, Any]


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
