"""The data lake: raw images, processed shards, model artifacts, and the bucket their access logs go to."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi

from shared import iam
from shared.bucket import LifecycleRule, SecureBucket, SecureBucketArgs, Transition
from shared.context import AwsContext


@dataclass(frozen=True)
class DataLakeArgs:
    """``processed_reader_role_arns``: roles of other stacks (the GPU fleet) that read processed shards;
    check them first (``iam.account_role_arn``): they go into the bucket policy as they are."""

    ctx: AwsContext
    kms_key_arn: pulumi.Input[str]
    raw_bucket_name: pulumi.Input[str]
    processed_bucket_name: pulumi.Input[str]
    artifacts_bucket_name: pulumi.Input[str]
    logs_bucket_name: pulumi.Input[str]
    raw_prefix: str
    quarantine_prefix: str
    shard_prefix: str
    raw_infrequent_access_days: int
    raw_glacier_days: int
    raw_retention_days: int
    access_log_retention_days: int
    noncurrent_version_days: int
    # The serving endpoint's data capture, in the artifacts bucket on the data key (captured requests are
    # data, not logs: the access-log bucket is SSE-S3 and refuses the key SageMaker encrypts them with).
    capture_prefix: str
    capture_retention_days: int
    processed_reader_role_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)


class DataLake(pulumi.ComponentResource):
    raw: SecureBucket
    processed: SecureBucket
    artifacts: SecureBucket
    logs: SecureBucket

    def __init__(self, name: str, args: DataLakeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:storage:DataLake", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        log_transitions = (Transition(30, "STANDARD_IA"),) if args.access_log_retention_days > 30 else ()
        # S3 server access logging delivers only to buckets whose default encryption is SSE-S3, so
        # this one bucket is the exception to SSE-KMS; it holds request logs, not data.
        self.logs = SecureBucket(f"{name}-logs", SecureBucketArgs(
            bucket_name=args.logs_bucket_name, kms_key_arn=None,
            lifecycle_rules=(LifecycleRule("expire-logs", transitions=log_transitions,
                                           expiration_days=args.access_log_retention_days),),
            noncurrent_version_expiration_days=args.noncurrent_version_days,
            extra_policy_statements=(_access_log_delivery(args.ctx, args.logs_bucket_name),),
        ), opts=child)
        logged = dict(access_log_bucket=self.logs.name, kms_key_arn=args.kms_key_arn,
                      noncurrent_version_expiration_days=args.noncurrent_version_days)

        retention = args.raw_retention_days
        self.raw = SecureBucket(f"{name}-raw", SecureBucketArgs(
            bucket_name=args.raw_bucket_name, eventbridge_notifications=True,
            lifecycle_rules=(
                # Uploads are read once by ingestion, then rarely: infrequent access, then Glacier
                # Instant Retrieval so a re-processing run needs no restore, then gone.
                LifecycleRule("raw-images", prefix=args.raw_prefix, expiration_days=retention, transitions=(
                    Transition(args.raw_infrequent_access_days, "STANDARD_IA"),
                    Transition(args.raw_glacier_days, "GLACIER_IR"))),
                LifecycleRule("quarantine", prefix=args.quarantine_prefix, expiration_days=retention),
            ),
            **logged,
        ), opts=child)
        readers = list(args.processed_reader_role_arns)
        self.processed = SecureBucket(f"{name}-processed", SecureBucketArgs(
            bucket_name=args.processed_bucket_name,
            # Shards are re-read by every training run at first, then less: let S3 tier them.
            lifecycle_rules=(LifecycleRule("shards", prefix=args.shard_prefix,
                                           transitions=(Transition(0, "INTELLIGENT_TIERING"),)),),
            extra_policy_statements=_readers(args.ctx, readers, args.processed_bucket_name, args.shard_prefix)
            if readers else (),
            **logged,
        ), opts=child)
        self.artifacts = SecureBucket(f"{name}-artifacts", SecureBucketArgs(
            bucket_name=args.artifacts_bucket_name,
            lifecycle_rules=(LifecycleRule("data-capture", prefix=args.capture_prefix,
                                           expiration_days=args.capture_retention_days),),
            **logged), opts=child)
        self.register_outputs({"raw": self.raw.name, "processed": self.processed.name,
                               "artifacts": self.artifacts.name, "logs": self.logs.name})


def _access_log_delivery(ctx: AwsContext, bucket_name: pulumi.Input[str]) -> dict:
    return {
        "Sid": "S3ServerAccessLogs", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": pulumi.Output.concat(_bucket_arn(ctx, bucket_name), "/s3/*"),
        "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}},
    }


def _bucket_arn(ctx: AwsContext, bucket_name: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", ctx.partition, ":s3:::", bucket_name)


def _readers(ctx: AwsContext, role_arns: list, bucket_name: pulumi.Input[str], shard_prefix: str) -> tuple[dict, ...]:
    """Other stacks' roles read shards and list the shard prefix, nothing else of the bucket."""
    arn = _bucket_arn(ctx, bucket_name)
    # The principals are checked role ARNs of this account; the condition holds even if one is replaced
    # by a principal that resolves elsewhere.
    own_account = {"aws:PrincipalAccount": ctx.account_id}
    return (
        {"Sid": "ExternalShardReaders", "Effect": "Allow", "Principal": {"AWS": role_arns},
         "Action": "s3:GetObject", "Resource": iam.objects_in(arn, shard_prefix),
         "Condition": {"StringEquals": own_account}},
        {"Sid": "ExternalShardListing", "Effect": "Allow", "Principal": {"AWS": role_arns},
         "Action": "s3:ListBucket", "Resource": arn,
         "Condition": {"StringEquals": own_account, "StringLike": {"s3:prefix": f"{shard_prefix}*"}}},
    )
