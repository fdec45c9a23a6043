"""The fleet instances' role and instance profile, scoped to this stack's buckets, table, key and parameters."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext

FLEET_TAG_KEY = "mlplatform:fleet"


@dataclass(frozen=True)
class InstanceRoleArgs:
    ctx: AwsContext
    fleet_name: str
    bucket_arns: Sequence[pulumi.Input[str]]
    table_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    log_group_arns: Sequence[pulumi.Input[str]]
    metric_namespace: str
    hparams_prefix: str
    read_only_bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    # s3:RestoreObject on the stack buckets: needed when the archive class is Glacier Flexible
    # Retrieval or Deep Archive, whose objects GetObject cannot read until restored.
    may_restore_archived: bool = False


def instance_policy_statements(args: InstanceRoleArgs) -> list[dict]:
    ctx = args.ctx
    hparams = args.hparams_prefix.lstrip("/")
    shared_data = [
        iam.allow(["s3:ListBucket"], list(args.read_only_bucket_arns), sid="ListReadOnlyBuckets"),
        iam.allow(["s3:GetObject"], [iam.objects_in(b) for b in args.read_only_bucket_arns], sid="ReadOnlyObjects"),
    ] if args.read_only_bucket_arns else []
    object_actions = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                      *(["s3:RestoreObject"] if args.may_restore_archived else [])]
    return [
        *shared_data,
        iam.allow(["s3:ListBucket", "s3:GetBucketLocation"], list(args.bucket_arns), sid="ListStackBuckets"),
        iam.allow(object_actions, [iam.objects_in(b) for b in args.bucket_arns], sid="ReadWriteStackObjects"),
        iam.allow(["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                   "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
                   "dynamodb:UpdateItem"],
                  [args.table_arn, pulumi.Output.concat(args.table_arn, "/index/*")], sid="ExperimentsTable"),
        iam.allow(["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                  [pulumi.Output.concat(a, ":*") for a in args.log_group_arns], sid="StackLogGroups"),
        iam.unscoped(["cloudwatch:PutMetricData"], sid="StackMetrics",
                     why="PutMetricData has no resource-level permissions; the namespace condition scopes it",
                     conditions={"StringEquals": {"cloudwatch:namespace": args.metric_namespace}}),
        iam.allow(["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
                  [ctx.arn("ssm", f"parameter/{hparams}"), ctx.arn("ssm", f"parameter/{hparams}/*")],
                  sid="HyperParameters"),
        iam.allow(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [args.kms_key_arn], sid="StackKey"),
        # The SSM agent, instead of AmazonSSMManagedInstanceCore (whose ssm:GetParameter* on "*" would
        # let the instances read every parameter of the account): register and report, and the
        # ssmmessages channels that carry Session Manager sessions and, from agent 3.3.40.0 on, Run
        # Command documents (older agents poll ec2messages instead, which this role does not grant).
        iam.allow(["ssm:UpdateInstanceInformation"], [ctx.arn("ec2", "instance/*")], sid="SsmAgentRegistration"),
        iam.unscoped(["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                      "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"], sid="SsmAgentChannels",
                     why="ssmmessages actions have no resource types"),
    ]


class TrainingInstanceRole(pulumi.ComponentResource):
    role: aws.iam.Role
    policy: aws.iam.RolePolicy
    instance_profile: aws.iam.InstanceProfile

    def __init__(self, name: str, args: InstanceRoleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:compute:TrainingInstanceRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(f"{name}-role", description=f"GPU training instances of {args.fleet_name}",
                                 assume_role_policy=iam.service_trust_policy("ec2.amazonaws.com"), opts=child)
        self.policy = aws.iam.RolePolicy(f"{name}-policy", role=self.role.id,
                                         policy=iam.document(instance_policy_statements(args)), opts=child)
        self.instance_profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, opts=child)
        self.register_outputs({"role_name": self.role.name, "role_arn": self.role.arn,
                               "instance_profile_arn": self.instance_profile.arn})
