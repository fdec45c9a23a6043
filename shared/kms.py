"""A customer-managed KMS key with rotation, an alias and a key policy naming the services that use it."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext

_KEY_USE = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]

# Services that call KMS as themselves (a service principal or a service-linked role) rather than
# through the caller's IAM permissions, and so must be named in the key policy.
SERVICE_GRANTS = ("logs", "cloudwatch", "events", "ec2-fleet")
# Services that deliver into something encrypted with this key: (Sid, principal, source-account condition).
# EventBridge's KMS requests carry no aws:SourceAccount/aws:SourceArn (AWS documents that these keys are
# unsupported there), so a condition on its grant would drop every event silently.
_DELIVERING_SERVICES = {
    "cloudwatch": ("CloudWatchAlarms", "cloudwatch.amazonaws.com", True),  # alarms -> encrypted SNS topic
    "events": ("EventBridge", "events.amazonaws.com", False),              # rule -> encrypted SQS queue
}


@dataclass(frozen=True)
class EncryptionKeyArgs:
    """``services``: which of SERVICE_GRANTS use the key as themselves. IAM roles of this account get
    key use through their own policies, which the root statement delegates to (AWS's default design)."""

    ctx: AwsContext
    description: str
    alias: str
    services: Sequence[str] = field(default_factory=tuple)
    deletion_window_in_days: int = 30
    # With "logs": the log group name prefixes of this stack (``/aws/lambda/<prefix>-``); CloudWatch Logs
    # may use the key only for log groups whose names start with one of them.
    log_group_prefixes: Sequence[str] = field(default_factory=tuple)
    # Roles outside this stack (another project's, in this account; check them with
    # iam.account_role_arn) that may decrypt through one service, e.g. S3: they have no IAM policy of
    # ours that could grant it. The grant holds only for requests with this encryption context, e.g.
    # {"aws:s3:arn": <bucket ARN>} (what S3 sends with bucket keys on), so one bucket, not every object.
    external_decrypt_role_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    external_decrypt_via: str = "s3"
    external_decrypt_context: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.services) - set(SERVICE_GRANTS)
        if unknown:
            raise ValueError(f"EncryptionKeyArgs.services: unknown {sorted(unknown)}; allowed: {SERVICE_GRANTS}")
        if not 7 <= self.deletion_window_in_days <= 30:
            raise ValueError("EncryptionKeyArgs.deletion_window_in_days must be 7 to 30")
        if not self.alias or self.alias.startswith("alias/aws"):
            raise ValueError("EncryptionKeyArgs.alias must be set and may not start with 'aws'")
        if ("logs" in self.services) != bool(self.log_group_prefixes):
            raise ValueError("EncryptionKeyArgs.log_group_prefixes: give the stack's log group name prefixes "
                             "exactly when services include 'logs'")
        bad = [p for p in self.log_group_prefixes if not re.fullmatch(r"[A-Za-z0-9._/#-]{1,500}", p)]
        if bad:
            raise ValueError(f"EncryptionKeyArgs.log_group_prefixes: not log group name prefixes "
                             f"(letters, digits, . _ / # -; the * is added): {bad}")
        if self.external_decrypt_role_arns and not self.external_decrypt_context:
            raise ValueError("EncryptionKeyArgs.external_decrypt_context is required with external_decrypt_role_arns")


def key_policy_statements(args: EncryptionKeyArgs) -> list[dict]:
    ctx = args.ctx
    source_account = {"StringEquals": {"aws:SourceAccount": ctx.account_id}}
    statements: list[dict] = [{
        # Without this statement no IAM policy can grant use of the key and the key becomes
        # unmanageable; "Resource": "*" in a key policy means this key.
        "Sid": "EnableIamPolicies",
        "Effect": "Allow",
        "Principal": {"AWS": ctx.root_principal()},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if "logs" in args.services:
        # CloudWatch Logs encrypts as its regional service principal; without this grant creating
        # an encrypted log group fails at once.
        logs_principal = {"Service": ctx.region.apply(lambda r: f"logs.{r}.amazonaws.com")}
        statements.append({
            "Sid": "CloudWatchLogs",
            "Effect": "Allow",
            "Principal": logs_principal,
            "Action": ["kms:Decrypt*", "kms:Encrypt*", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
            "Resource": "*",
            # Only for this stack's log groups (Logs sends the log group ARN as encryption context), so
            # nobody in the account can encrypt another log group with this key.
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
                ctx.arn("logs", f"log-group:{p}*") for p in args.log_group_prefixes]}},
        })
        # DescribeKey carries no encryption context, so it cannot sit under the condition above.
        statements.append({"Sid": "CloudWatchLogsDescribe", "Effect": "Allow", "Principal": logs_principal,
                           "Action": "kms:DescribeKey", "Resource": "*"})
    for service, (sid, principal, conditioned) in _DELIVERING_SERVICES.items():
        if service in args.services:
            statement = {"Sid": sid, "Effect": "Allow", "Principal": {"Service": principal},
                         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}
            if conditioned:
                statement["Condition"] = source_account
            statements.append(statement)
    if "ec2-fleet" in args.services:
        # EC2 Fleet launches Spot instances with EBS volumes encrypted by this key as its service-linked
        # roles, which no IAM policy of ours can reach. Matching them by aws:PrincipalArn (not as
        # principals) keeps the policy valid in an account where the roles do not exist yet.
        slr = pulumi.Output.all(ctx.partition, ctx.account_id).apply(lambda v: [
            f"arn:{v[0]}:iam::{v[1]}:role/aws-service-role/ec2fleet.amazonaws.com/AWSServiceRoleForEC2Fleet",
            f"arn:{v[0]}:iam::{v[1]}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot",
        ])
        via_ec2 = ctx.region.apply(lambda r: f"ec2.{r}.amazonaws.com")
        statements.append({
            "Sid": "Ec2FleetVolumes", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": _KEY_USE, "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": slr},
                          "StringEquals": {"kms:CallerAccount": ctx.account_id, "kms:ViaService": via_ec2}},
        })
        statements.append({
            "Sid": "Ec2FleetVolumeGrants", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": "kms:CreateGrant", "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": slr},
                          "StringEquals": {"kms:CallerAccount": ctx.account_id},
                          "Bool": {"kms:GrantIsForAWSResource": "true"}},
        })
    if args.external_decrypt_role_arns:
        statements.append({
            "Sid": "ExternalReaders", "Effect": "Allow", "Principal": {"AWS": list(args.external_decrypt_role_arns)},
            # Decrypt is all an S3 read needs; DescribeKey carries no encryption context, so the condition
            # below would never match it.
            "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {
                "kms:ViaService": ctx.region.apply(lambda r: f"{args.external_decrypt_via}.{r}.amazonaws.com"),
                "aws:PrincipalAccount": ctx.account_id,
                **{f"kms:EncryptionContext:{k}": v for k, v in sorted(args.external_decrypt_context.items())}}},
        })
    return statements


class EncryptionKey(pulumi.ComponentResource):
    key: aws.kms.Key
    arn: pulumi.Output[str]
    key_id: pulumi.Output[str]
    alias_name: pulumi.Output[str]

    def __init__(self, name: str, args: EncryptionKeyArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:security:EncryptionKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_in_days,
            policy=iam.document(key_policy_statements(args)),
            opts=child,
        )
        alias = aws.kms.Alias(f"{name}-alias", name=f"alias/{args.alias}", target_key_id=self.key.key_id, opts=child)
        self.arn = self.key.arn
        self.key_id = self.key.key_id
        self.alias_name = alias.name
        self.register_outputs({"arn": self.arn, "key_id": self.key_id, "alias_name": self.alias_name})
