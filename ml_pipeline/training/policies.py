"""The training workflow's IAM: the state machine's role, the SageMaker execution role, the scheduler's role.

The workflow role has what the ``.sync`` integrations need (the Step Functions developer guide, "IAM
policies for SageMaker"): the job actions on this stack's job-name prefix, ``iam:PassRole`` for the
execution role and only to SageMaker, and the managed ``StepFunctionsGetEventsForSageMaker*`` rules, which
Step Functions creates itself. The execution role reads the shards, the snapshots and the code channel
and writes only the training output prefix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from shared import iam
from shared.context import AwsContext

SNAPSHOT_PREFIX = "snapshots/"
CODE_PREFIX = "code/"
OUTPUT_PREFIX = "training/"
# Step Functions creates and keeps these rules to learn when a .sync job ends.
MANAGED_RULES = ("StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                 "StepFunctionsGetEventsForSageMakerTuningJobsRule",
                 "StepFunctionsGetEventsForSageMakerProcessingJobsRule")
SYNC_TAGGING = ("sagemaker:AddTags", "sagemaker:ListTags")
# Step Functions delivers execution logs through CloudWatch Logs' vended log delivery, whose APIs
# have no resource-level permissions (Step Functions developer guide, "IAM policies for logging").
LOG_DELIVERY_ACTIONS = ("logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                        "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy", "logs:UpdateLogDelivery")


@dataclass(frozen=True)
class WorkflowAccess:
    ctx: AwsContext
    job_prefix: str
    function_arns: Sequence[pulumi.Input[str]]
    experiments_table_arn: pulumi.Input[str]
    experiments_key_arn: pulumi.Input[str]
    versions_table_arn: pulumi.Input[str]
    metadata_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    deployment_state_machine_arn: Optional[pulumi.Input[str]] = None


def _sagemaker(ctx: AwsContext, kind: str, prefix: str) -> pulumi.Output[str]:
    # SageMaker puts job names into ARNs in lower case; every job name is "<prefix>-..." (the dash keeps
    # stack dev out of stack dev2's jobs).
    return ctx.arn("sagemaker", f"{kind}/{prefix.lower()}-*")


def workflow_statements(a: WorkflowAccess) -> list[dict]:
    ctx = a.ctx
    statements = [
        iam.allow(["lambda:InvokeFunction"], list(a.function_arns), sid="WorkflowFunctions"),
        iam.allow(["dynamodb:PutItem", "dynamodb:UpdateItem"], [a.experiments_table_arn], sid="ExperimentRuns"),
        iam.allow(["dynamodb:Query"], [pulumi.Output.concat(a.versions_table_arn, "/index/status-index")],
                  sid="ProductionVersion"),
        # Tables and alarm topic are encrypted with customer keys (the experiments table may be gpu-training's).
        iam.allow(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
                  list(dict.fromkeys([a.metadata_key_arn, a.experiments_key_arn])), sid="TableAndTopicKeys"),
        # .sync tags each job it creates (MANAGED_BY_AWS=STARTED_BY_STEP_FUNCTIONS: tag-on-create needs
        # sagemaker:AddTags, aws/aws-cdk#32294 and #26012) and reads the tags back (sagemaker:ListTags, in every
        # .sync template of the developer guide), on the job it created.
        iam.allow(["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                   *SYNC_TAGGING], [_sagemaker(ctx, "training-job", a.job_prefix)], sid="TrainingJobs"),
        iam.allow(["sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
                   "sagemaker:StopHyperParameterTuningJob", "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                   *SYNC_TAGGING], [_sagemaker(ctx, "hyper-parameter-tuning-job", a.job_prefix)], sid="TuningJobs"),
        iam.allow(["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                   *SYNC_TAGGING], [_sagemaker(ctx, "processing-job", a.job_prefix)], sid="ProcessingJobs"),
        iam.allow(["iam:PassRole"], [a.execution_role_arn], sid="PassExecutionRoleToSageMaker",
                  conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
        iam.allow(["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                  [ctx.arn("events", f"rule/{rule}") for rule in MANAGED_RULES], sid="SyncIntegrationRules"),
        iam.allow(["sns:Publish"], [a.alarm_topic_arn], sid="AlarmTopic"),
        iam.unscoped(list(LOG_DELIVERY_ACTIONS), sid="ExecutionLogDelivery",
                     why="CloudWatch Logs vended log delivery APIs have no resource-level permissions"),
        iam.unscoped(["xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords",
                      "xray:PutTraceSegments"], sid="XRay", why="X-Ray APIs have no resource-level permissions"),
    ]
    if a.deployment_state_machine_arn is not None:
        statements.append(iam.allow(["states:StartExecution"], [a.deployment_state_machine_arn], sid="HandOver"))
    return statements


@dataclass(frozen=True)
class ExecutionAccess:
    ctx: AwsContext
    processed_bucket_arn: pulumi.Input[str]
    shard_prefix: str
    artifacts_bucket_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    image_repository_arns: Sequence[pulumi.Input[str]]


def execution_statements(a: ExecutionAccess) -> list[dict]:
    ctx = a.ctx
    return [
        iam.allow(["s3:GetObject"], [iam.objects_in(a.processed_bucket_arn, a.shard_prefix)], sid="ReadShards"),
        iam.allow(["s3:GetObject"], [iam.objects_in(a.artifacts_bucket_arn, p)
                                     for p in (SNAPSHOT_PREFIX, CODE_PREFIX, OUTPUT_PREFIX)],
                  sid="ReadSnapshotsCodeAndModels"),
        # S3Prefix channels (code, candidate and production models) list their prefix first.
        iam.allow(["s3:ListBucket"], [a.artifacts_bucket_arn], sid="ListChannels",
                  conditions={"StringLike": {"s3:prefix": [f"{CODE_PREFIX}*", f"{OUTPUT_PREFIX}*"]}}),
        iam.allow(["s3:AbortMultipartUpload", "s3:PutObject"], [iam.objects_in(a.artifacts_bucket_arn, OUTPUT_PREFIX)],
                  sid="WriteOutputPrefix"),
        # The data key encrypts the shards, the model artifacts, the checkpoints and the jobs' volumes.
        iam.allow(["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"], [a.data_key_arn],
                  sid="DataKey"),
        iam.allow(["kms:CreateGrant"], [a.data_key_arn], sid="VolumeGrants",
                  conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}),
        iam.allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                  [ctx.arn("logs", "log-group:/aws/sagemaker/*")], sid="JobLogs"),
        iam.unscoped(["cloudwatch:PutMetricData"], sid="JobMetrics", why="PutMetricData has no resource-level permissions",
                     conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}),
        iam.unscoped(["ecr:GetAuthorizationToken"], sid="EcrLogin",
                     why="GetAuthorizationToken has no resource-level permissions"),
        iam.allow(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                  list(a.image_repository_arns), sid="FrameworkImages"),
        # Jobs in a VPC: SageMaker attaches network interfaces in the role's name.
        iam.allow(["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                   "ec2:DeleteNetworkInterfacePermission"],
                  [ctx.arn("ec2", "network-interface/*"), ctx.arn("ec2", "subnet/*"), ctx.arn("ec2", "security-group/*")],
                  sid="JobNetworkInterfaces"),
        iam.unscoped(["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
                      "ec2:DescribeSubnets", "ec2:DescribeVpcs"], sid="JobNetworkLookups",
                     why="EC2 Describe* actions have no resource-level permissions"),
    ]
