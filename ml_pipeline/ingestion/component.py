"""Image ingestion: raw bucket -> EventBridge -> SQS (backpressure, retries, DLQ) -> validation Lambda.

The queue between the rule and the function absorbs bursts (10x the 12 images/s average) while the
event source mapping's maximum concurrency caps the function; failed records return to the queue
through partial batch responses and reach the dead-letter queue after ``max_receive_count`` tries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_aws as aws

from ml_pipeline.ingestion.alarms import ingestion_alarms
from ml_pipeline.ingestion.settings import IngestSettings
from ml_pipeline.metric_names import namespace as metric_namespace
from shared import iam
from shared.context import AwsContext
from shared.lambda_function import FUNCTIONS_DIR, PythonFunction, PythonFunctionArgs, function_module

# The function's own lists: its environment variable names, metric names and catalog key constants.
ENV = function_module("image_ingest", "environment")
METRICS = function_module("image_ingest", "metric_names")
_CATALOG = function_module("image_ingest", "catalog")

DLQ_RETENTION_S = 14 * 24 * 3600
QUEUE_RETENTION_S = 4 * 24 * 3600


@dataclass(frozen=True)
class ImageIngestionArgs:
    ctx: AwsContext
    name_prefix: str
    settings: IngestSettings
    raw_bucket_name: pulumi.Input[str]
    raw_bucket_arn: pulumi.Input[str]
    processed_bucket_name: pulumi.Input[str]
    processed_bucket_arn: pulumi.Input[str]
    catalog_table_name: pulumi.Input[str]
    catalog_table_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    metadata_key_arn: pulumi.Input[str]
    layer_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int


def event_pattern(bucket_name: str, prefix: str) -> str:
    """Object-created events of one bucket under one key prefix (S3 sends them with EventBridge on)."""
    return json.dumps({
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket_name]}, "object": {"key": [{"prefix": prefix}]}},
    })


def function_environment(args: ImageIngestionArgs) -> dict[str, pulumi.Input[str]]:
    """Every variable of ``ENV.ALL``, each required by the function; the memory size reaches it from
    Lambda itself (AWS_LAMBDA_FUNCTION_MEMORY_SIZE) and the log level through the logging config."""
    s = args.settings
    environment = {
        ENV.PROCESSED_BUCKET: args.processed_bucket_name,
        ENV.CATALOG_TABLE: args.catalog_table_name,
        ENV.RAW_PREFIX: s.raw_prefix,
        ENV.QUARANTINE_PREFIX: s.quarantine_prefix,
        ENV.SHARD_PREFIX: s.shard_prefix,
        ENV.LABEL_PATH_SEGMENT: str(s.label_path_segment),
        ENV.TRAINING_IMAGE_SIZE: str(s.training_image_size),
        ENV.JPEG_QUALITY: str(s.jpeg_quality),
        ENV.MAX_INPUT_BYTES: str(s.max_input_mb * 1024 * 1024),
        ENV.MAX_PIXELS: str(s.max_megapixels * 1_000_000),
        ENV.MAX_PIXELS_PER_BYTE: str(s.max_pixels_per_byte),
        ENV.MIN_DIMENSION: str(s.min_dimension),
        ENV.ALLOWED_FORMATS: ",".join(s.allowed_formats),
        # Threads per invocation, so S3 reads overlap with decoding; decoded pixels are budgeted across them.
        ENV.WORKERS: str(s.workers),
        ENV.METRIC_NAMESPACE: metric_namespace(args.name_prefix),
    }
    if set(environment) != set(ENV.ALL):
        raise RuntimeError(f"environment {sorted(environment)} differs from the function's {sorted(ENV.ALL)}")
    return environment


def _via(ctx: AwsContext, *services: str) -> dict:
    """Key use only through these services of the stack's region (issue 8: kms:ViaService)."""
    return {"StringEquals": {"kms:ViaService": [
        pulumi.Output.concat(service, ".", ctx.region, ".", ctx.dns_suffix) for service in services]}}


def function_statements(args: ImageIngestionArgs, queue_arn: pulumi.Input[str]) -> list[dict]:
    s = args.settings
    return [
        iam.allow(["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"],
                  [iam.objects_in(args.raw_bucket_arn, s.raw_prefix)], sid="ReadRawImages"),
        # Without ListBucket, S3 answers a GET of a missing key with 403, indistinguishable from a real
        # denial; with it, 404 (issue 8). Listing is limited to the upload prefix.
        iam.allow(["s3:ListBucket"], [args.raw_bucket_arn], sid="ListRawPrefix",
                  conditions={"StringLike": {"s3:prefix": [f"{s.raw_prefix}*"]}}),
        iam.allow(["s3:PutObject", "s3:PutObjectTagging"], [iam.objects_in(args.raw_bucket_arn, s.quarantine_prefix)],
                  sid="QuarantineCopies"),
        iam.allow(["s3:PutObject"], [iam.objects_in(args.processed_bucket_arn, s.shard_prefix)], sid="WriteShards"),
        iam.allow(["dynamodb:BatchGetItem", "dynamodb:PutItem"], [args.catalog_table_arn], sid="Catalog"),
        # The daily statistics items only (partition key stats#YYYY-MM-DD), one ADD per batch.
        iam.allow(["dynamodb:UpdateItem"], [args.catalog_table_arn], sid="DailyStatistics",
                  conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{_CATALOG.STATS_PREFIX}*"]}}),
        iam.allow(["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
                  [queue_arn], sid="IngestQueue"),
        iam.unscoped(["cloudwatch:PutMetricData"], sid="Metrics",
                     why="PutMetricData has no resource-level permissions; the namespace condition scopes it",
                     conditions={"StringEquals": {"cloudwatch:namespace": metric_namespace(args.name_prefix)}}),
        # S3 objects and the queue are encrypted with the data key, the catalog with the metadata key;
        # the role may use each only through the service that holds data under it.
        iam.allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.data_key_arn], sid="DataKey",
                  conditions=_via(args.ctx, "s3", "sqs")),
        iam.allow(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [args.metadata_key_arn], sid="MetadataKey",
                  conditions=_via(args.ctx, "dynamodb")),
    ]


def _events_may_send(queue: aws.sqs.Queue, rule: aws.cloudwatch.EventRule) -> pulumi.Output[str]:
    return iam.document([
        {"Sid": "EventBridgeRule", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
         "Action": "sqs:SendMessage", "Resource": queue.arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule.arn}}},
        # Every action (receive, delete, purge, send) only over TLS, not sending alone.
        iam.deny_insecure_transport("sqs", queue.arn),
    ])


class ImageIngestion(pulumi.ComponentResource):
    queue: aws.sqs.Queue
    dead_letter_queue: aws.sqs.Queue
    function: PythonFunction

    def __init__(self, name: str, args: ImageIngestionArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:ingestion:ImageIngestion", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        prefix = args.name_prefix

        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq", name=f"{prefix}-ingest-dlq", kms_master_key_id=args.data_key_arn,
            kms_data_key_reuse_period_seconds=300, message_retention_seconds=DLQ_RETENTION_S, opts=child)
        self.queue = aws.sqs.Queue(
            f"{name}-queue", name=f"{prefix}-ingest", kms_master_key_id=args.data_key_arn,
            kms_data_key_reuse_period_seconds=300, message_retention_seconds=QUEUE_RETENTION_S,
            # AWS's guidance for Lambda consumers: at least six times the function timeout plus the
            # batching window, so a retried batch never reappears while still being processed.
            visibility_timeout_seconds=6 * s.timeout_s + s.batch_window_s,
            redrive_policy=self.dead_letter_queue.arn.apply(lambda arn: json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": s.max_receive_count})),
            opts=child)

        rule = aws.cloudwatch.EventRule(
            f"{name}-rule", name=f"{prefix}-raw-image-created",
            description="Images created under the raw bucket's ingest prefix",
            event_pattern=pulumi.Output.from_input(args.raw_bucket_name).apply(
                lambda bucket: event_pattern(bucket, s.raw_prefix)),
            opts=child)
        aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=self.queue.url,
                            policy=_events_may_send(self.queue, rule), opts=child)
        aws.sqs.QueuePolicy(f"{name}-dlq-policy", queue_url=self.dead_letter_queue.url,
                            policy=_events_may_send(self.dead_letter_queue, rule), opts=child)
        aws.cloudwatch.EventTarget(
            f"{name}-target", rule=rule.name, arn=self.queue.arn,
            # Events EventBridge cannot deliver (queue policy or key trouble) land in the DLQ too.
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=self.dead_letter_queue.arn),
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(maximum_event_age_in_seconds=86400,
                                                                  maximum_retry_attempts=185),
            opts=child)

        self.function = PythonFunction(f"{name}-fn", PythonFunctionArgs(
            ctx=args.ctx, function_name=f"{prefix}-image-ingest", source_folder="image_ingest",
            description="Validate, strip metadata, resize and shard raw images; catalog each one",
            log_kms_key_arn=args.metadata_key_arn, statements=function_statements(args, self.queue.arn),
            environment=function_environment(args), memory_mb=s.memory_mb, timeout_s=s.timeout_s,
            architecture=s.architecture, reserved_concurrency=s.reserved_concurrency, layer_arns=(args.layer_arn,),
            log_retention_days=args.log_retention_days, log_level=s.log_level,
            failures_handled_by_event_source=True,
        ), opts=child)
        aws.lambda_.EventSourceMapping(
            f"{name}-mapping", event_source_arn=self.queue.arn, function_name=self.function.arn,
            batch_size=s.batch_size, maximum_batching_window_in_seconds=s.batch_window_s,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=s.max_concurrency),
            opts=child)
        # Children of this component (their URNs stay where they were before alarms.py existed).
        ingestion_alarms(self, name, args.name_prefix, args.alarm_topic_arn, metric_namespace(args.name_prefix),
                         METRICS)
        self.register_outputs({"queue_url": self.queue.url, "dead_letter_queue_url": self.dead_letter_queue.url,
                               "function_name": self.function.name})


def layer_zip(architecture: str) -> Path:
    """Where `make layer` (tools/build_layer.sh) writes the image library layer for an architecture."""
    return FUNCTIONS_DIR.parent / "build" / "layers" / f"image_ingest-{architecture}.zip"
