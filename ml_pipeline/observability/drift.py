"""Drift detection for image inputs: a scheduled function, its alarm, and retraining on the alarm.

SageMaker Model Monitor's data-quality monitoring expects tabular captures; these are images. So the
``drift_monitor`` function reads a period's data capture, publishes population stability indexes of
image statistics and predicted classes against the training snapshot's baseline, and a CloudWatch
alarm watches the production variant's score. Alarm state changes reach EventBridge by themselves;
when ``retrain_on_drift`` is set a rule on the alarm's ALARM state starts the training state machine.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from ml_pipeline import metric_names as names
from ml_pipeline.observability import alarm_specs
from ml_pipeline.observability.settings import ObservabilitySettings
from shared import iam
from shared.context import AwsContext
from shared.lambda_function import PythonFunction, PythonFunctionArgs

DLQ_RETENTION_S = 14 * 24 * 3600
TIMEOUT_S = 900  # reading a period's captures (driftMaxRecords) and, once per snapshot, the baseline


@dataclass(frozen=True)
class DriftMonitorArgs:
    """Names of what the function reads; the endpoint and its variants are not Pulumi resources here
    (the deployment workflow owns them), so they come as plain names. ``variants[0]`` is the
    production variant the alarm watches."""

    ctx: AwsContext
    name_prefix: str
    settings: ObservabilitySettings
    metric_namespace: str
    endpoint_name: str
    variants: Sequence[str]
    capture_bucket_name: pulumi.Input[str]
    capture_bucket_arn: pulumi.Input[str]
    capture_prefix: str  # serving's DataCaptureConfig prefix, e.g. "data-capture/"
    snapshot_bucket_name: pulumi.Input[str]  # where the training workflow writes snapshots
    snapshot_bucket_arn: pulumi.Input[str]
    snapshot_prefix: str  # e.g. "snapshots/"
    shard_bucket_arn: pulumi.Input[str]  # the processed bucket (the snapshot's train shards)
    shard_prefix: str
    model_versions_table_name: pulumi.Input[str]
    model_versions_table_arn: pulumi.Input[str]
    model_name: str
    state_machine_arn: pulumi.Input[str]  # the training workflow
    data_key_arn: pulumi.Input[str]  # captures, snapshots, shards and the function's DLQ
    log_kms_key_arn: pulumi.Input[str]
    layer_arn: pulumi.Input[str]  # Pillow (the ingest function's layer)
    architecture: str  # the layer's
    target_size: int  # trainingImageSize
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int
    model_versions_key_arn: Optional[pulumi.Input[str]] = None

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("DriftMonitorArgs.variants needs at least the production variant")
        for field in ("capture_prefix", "snapshot_prefix", "shard_prefix"):
            value = getattr(self, field)
            if not value.endswith("/") or value.startswith("/"):
                raise ValueError(f"DriftMonitorArgs.{field} must end in / and not start with /: {value!r}")


def function_environment(args: DriftMonitorArgs) -> dict[str, pulumi.Input[str]]:
    s = args.settings
    return {
        "CAPTURE_BUCKET": args.capture_bucket_name, "CAPTURE_PREFIX": args.capture_prefix,
        "ENDPOINT_NAME": args.endpoint_name, "VARIANTS": ",".join(args.variants),
        "PERIOD_MINUTES": str(s.drift_period_minutes), "MIN_SAMPLES": str(s.drift_min_samples),
        "MAX_RECORDS": str(s.drift_max_records), "MODEL_VERSIONS_TABLE": args.model_versions_table_name,
        "MODEL_NAME": args.model_name, "SNAPSHOT_BUCKET": args.snapshot_bucket_name,
        "SNAPSHOT_PREFIX": args.snapshot_prefix, "BASELINE_IMAGES": str(s.drift_baseline_images),
        "TARGET_SIZE": str(args.target_size), "METRIC_NAMESPACE": args.metric_namespace,
    }


def function_statements(args: DriftMonitorArgs) -> list[dict]:
    captures = f"{args.capture_prefix}{args.endpoint_name}/"
    statements = [
        iam.allow(["s3:ListBucket"], [args.capture_bucket_arn], sid="ListCaptures",
                  conditions={"StringLike": {"s3:prefix": [f"{captures}*"]}}),
        iam.allow(["s3:GetObject"], [iam.objects_in(args.capture_bucket_arn, captures)], sid="ReadCaptures"),
        iam.allow(["s3:GetObject"], [iam.objects_in(args.snapshot_bucket_arn, args.snapshot_prefix)],
                  sid="ReadSnapshots"),
        iam.allow(["s3:PutObject"], [pulumi.Output.concat(args.snapshot_bucket_arn, "/", args.snapshot_prefix,
                                                          "*/drift-baseline.json")], sid="CacheBaseline"),
        iam.allow(["s3:GetObject"], [iam.objects_in(args.shard_bucket_arn, args.shard_prefix)], sid="ReadShards"),
        iam.allow(["dynamodb:Query"], [pulumi.Output.concat(args.model_versions_table_arn, "/index/status-index")],
                  sid="ProductionVersion"),
        iam.unscoped(["cloudwatch:PutMetricData"], sid="DriftMetrics",
                     why="PutMetricData has no resource-level permissions; the namespace condition scopes it",
                     conditions={"StringEquals": {"cloudwatch:namespace": args.metric_namespace}}),
        # SSE-KMS objects (read: Decrypt; the baseline and the DLQ: GenerateDataKey).
        iam.allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.data_key_arn], sid="DataKey"),
    ]
    if args.model_versions_key_arn is not None:
        statements.append(iam.allow(["kms:Decrypt"], [args.model_versions_key_arn], sid="ModelVersionsKey"))
    return statements


def retrain_event_pattern(alarm_arn: str) -> str:
    """The drift alarm entering ALARM (CloudWatch sends every state change to the default bus)."""
    return json.dumps({"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
                       "resources": [alarm_arn], "detail": {"state": {"value": ["ALARM"]}}})


# The workflow's input (it keeps it under $.input): why this run started.
RETRAIN_INPUT_PATHS = {"alarm": "$.detail.alarmName", "reason": "$.detail.state.reason", "time": "$.time"}
RETRAIN_INPUT_TEMPLATE = '{"trigger": "drift", "alarm_name": <alarm>, "reason": <reason>, "detected_at": <time>}'


class DriftMonitor(pulumi.ComponentResource):
    function: PythonFunction
    dead_letter_queue: aws.sqs.Queue
    alarm: aws.cloudwatch.MetricAlarm
    alarm_name: str
    retrain_rule: Optional[aws.cloudwatch.EventRule]

    def __init__(self, name: str, args: DriftMonitorArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:observability:DriftMonitor", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s, prefix = args.settings, args.name_prefix

        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq", name=f"{prefix}-drift-dlq", kms_master_key_id=args.data_key_arn,
            kms_data_key_reuse_period_seconds=300, message_retention_seconds=DLQ_RETENTION_S, opts=child)
        self.function = PythonFunction(f"{name}-fn", PythonFunctionArgs(
            ctx=args.ctx, function_name=f"{prefix}-drift-monitor", source_folder="drift_monitor",
            description="Image and prediction drift of the endpoint's captured traffic against the training snapshot",
            log_kms_key_arn=args.log_kms_key_arn, statements=function_statements(args),
            environment=function_environment(args), memory_mb=s.drift_memory_mb, timeout_s=TIMEOUT_S,
            architecture=args.architecture, layer_arns=(args.layer_arn,), log_retention_days=args.log_retention_days,
            dead_letter_queue_arn=self.dead_letter_queue.arn,
        ), opts=child)

        schedule = aws.cloudwatch.EventRule(
            f"{name}-schedule", name=f"{prefix}-drift-schedule",
            description=f"Measure drift every {s.drift_period_minutes} minutes",
            schedule_expression=f"rate({s.drift_period_minutes} minutes)", opts=child)
        aws.lambda_.Permission(f"{name}-invoke", action="lambda:InvokeFunction", function=self.function.name,
                               principal="events.amazonaws.com", source_arn=schedule.arn, opts=child)
        aws.cloudwatch.EventTarget(
            f"{name}-target", rule=schedule.name, arn=self.function.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=s.drift_period_minutes * 60, maximum_retry_attempts=2),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=self.dead_letter_queue.arn),
            opts=child)
        production = args.variants[0]
        self.alarm_name = f"{prefix}-drift-{production}"
        self.alarm = aws.cloudwatch.MetricAlarm(f"{name}-alarm", **alarm_specs.threshold(
            self.alarm_name,
            f"Captured traffic of {args.endpoint_name}/{production} drifted from the training snapshot "
            f"(largest PSI over {s.drift_psi_threshold:g})"
            + ("; starts retraining" if s.retrain_on_drift else ""),
            args.metric_namespace, names.DRIFT_SCORE, {"EndpointName": args.endpoint_name, "VariantName": production},
            "Maximum", s.drift_psi_threshold, period=s.drift_period_minutes * 60, comparison="GreaterThanThreshold"),
            alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn], opts=child)
        aws.cloudwatch.MetricAlarm(f"{name}-dlq-alarm", **alarm_specs.threshold(
            f"{prefix}-drift-dlq-not-empty", "Scheduled drift runs failed after retries (see the function's logs)",
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": self.dead_letter_queue.name}, "Maximum", 0),
            alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn], opts=child)

        self.retrain_rule = None
        if s.retrain_on_drift:
            self.retrain_rule = aws.cloudwatch.EventRule(
                f"{name}-retrain", name=f"{prefix}-retrain-on-drift",
                description="Start the training workflow when the drift alarm fires",
                event_pattern=self.alarm.arn.apply(retrain_event_pattern), opts=child)
            role = aws.iam.Role(f"{name}-retrain-role", description="EventBridge starts the training workflow on drift",
                                assume_role_policy=iam.service_trust_policy("events.amazonaws.com",
                                                                            source_account=args.ctx.account_id),
                                opts=child)
            policy = aws.iam.RolePolicy(f"{name}-retrain-policy", role=role.id, policy=iam.document([
                iam.allow(["states:StartExecution"], [args.state_machine_arn], sid="StartTraining")]), opts=child)
            aws.cloudwatch.EventTarget(
                f"{name}-retrain-target", rule=self.retrain_rule.name, arn=args.state_machine_arn, role_arn=role.arn,
                input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                    input_paths=RETRAIN_INPUT_PATHS, input_template=RETRAIN_INPUT_TEMPLATE),
                retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(maximum_event_age_in_seconds=3600,
                                                                      maximum_retry_attempts=10),
                dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=self.dead_letter_queue.arn),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
        # Both rules' undeliverable events land in the DLQ; only they may send to it.
        senders = [schedule.arn] + ([self.retrain_rule.arn] if self.retrain_rule is not None else [])
        aws.sqs.QueuePolicy(f"{name}-dlq-policy", queue_url=self.dead_letter_queue.url, policy=iam.document([
            {"Sid": "ScheduleDeadLetters", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
             "Action": "sqs:SendMessage", "Resource": self.dead_letter_queue.arn,
             "Condition": {"ArnEquals": {"aws:SourceArn": senders}}},
            iam.deny_insecure_transport("sqs", self.dead_letter_queue.arn),
        ]), opts=child)

        self.register_outputs({"function_name": self.function.name, "alarm_name": self.alarm_name})
