"""An S3 bucket that is private, versioned, encrypted and TLS-only by construction."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam

STORAGE_CLASSES = ("STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")


@dataclass(frozen=True)
class Transition:
    days: int
    storage_class: str

    def __post_init__(self) -> None:
        if self.storage_class not in STORAGE_CLASSES:
            raise ValueError(f"Transition.storage_class must be one of {STORAGE_CLASSES}, got {self.storage_class!r}")
        if self.days < 0:
            raise ValueError("Transition.days must be >= 0")
        if self.storage_class in ("STANDARD_IA", "ONEZONE_IA") and self.days < 30:
            # S3 rejects IA transitions earlier than 30 days after creation.
            raise ValueError(f"Transition to {self.storage_class} needs days >= 30, got {self.days}")


@dataclass(frozen=True)
class LifecycleRule:
    """One lifecycle rule over ``prefix`` ("" = whole bucket)."""

    id: str
    prefix: str = ""
    transitions: Sequence[Transition] = field(default_factory=tuple)
    expiration_days: Optional[int] = None

    def __post_init__(self) -> None:
        ia_days = [t.days for t in self.transitions if t.storage_class in ("STANDARD_IA", "ONEZONE_IA")]
        early = [t for t in self.transitions if ia_days and t.storage_class not in ("STANDARD_IA", "ONEZONE_IA")
                 and t.days < min(ia_days) + 30]
        if early:
            # S3 rejects the rule: objects stay 30 days in an IA class before the next transition.
            raise ValueError(f"LifecycleRule {self.id}: {early[0].storage_class} at {early[0].days} days must be "
                             f"30 days or more after the IA transition at {min(ia_days)} days")
        if self.expiration_days is not None:
            if self.expiration_days < 1:
                raise ValueError(f"LifecycleRule {self.id}: expiration_days must be >= 1")
            late = [t for t in self.transitions if t.days >= self.expiration_days]
            if late:
                raise ValueError(f"LifecycleRule {self.id}: transitions at or after expiration ({self.expiration_days} days)")


@dataclass(frozen=True)
class SecureBucketArgs:
    """``kms_key_arn`` None means SSE-S3, which only the S3 access-log target bucket should use (S3
    server access logging cannot deliver to a bucket whose default encryption is SSE-KMS)."""

    bucket_name: pulumi.Input[str]
    kms_key_arn: Optional[pulumi.Input[str]]
    lifecycle_rules: Sequence[LifecycleRule] = field(default_factory=tuple)
    noncurrent_version_expiration_days: int = 30
    abort_incomplete_multipart_days: int = 7
    # Let objects under 128 KB transition too (S3's default since 2024 skips them).
    transition_small_objects: bool = True
    eventbridge_notifications: bool = False
    access_log_bucket: Optional[pulumi.Input[str]] = None
    access_log_prefix: str = ""
    extra_policy_statements: Sequence[dict] = field(default_factory=tuple)
    force_destroy: bool = False

    def __post_init__(self) -> None:
        if self.noncurrent_version_expiration_days < 1:
            raise ValueError("SecureBucketArgs.noncurrent_version_expiration_days must be >= 1")
        if self.abort_incomplete_multipart_days < 1:
            raise ValueError("SecureBucketArgs.abort_incomplete_multipart_days must be >= 1")
        ids = [r.id for r in self.lifecycle_rules]
        if len(ids) != len(set(ids)) or "bucket-hygiene" in ids:
            raise ValueError(f"SecureBucketArgs.lifecycle_rules ids must be unique and not 'bucket-hygiene': {ids}")


def _rule_args(rule: LifecycleRule) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule.id,
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=rule.prefix) if rule.prefix
        else aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
        transitions=[
            aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(days=t.days, storage_class=t.storage_class)
            for t in rule.transitions
        ] or None,
        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=rule.expiration_days)
        if rule.expiration_days else None,
    )


class SecureBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecureBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(name, bucket=args.bucket_name, force_destroy=args.force_destroy, opts=child)
        bucket_id = self.bucket.id

        # Each sub-resource waits for the one before: S3 answers concurrent configuration writes to one
        # bucket with 409 OperationAborted ("A conflicting conditional operation is currently in
        # progress"), intermittently, e.g. PutBucketPolicy beside PutBucketVersioning or
        # PutPublicAccessBlock (hashicorp/terraform-provider-aws#33552, #7628). On destroy the chain
        # runs backwards, so deletes do not collide either.
        def after(*resources: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(resources))

        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket_id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child,
        )
        # The policy comes after the public access block so S3 never sees it on an unprotected bucket.
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket_id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=after(ownership),
        )
        policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket_id,
            policy=iam.document([_deny_plain_http(self.bucket.arn), *args.extra_policy_statements,
                                 *_deny_other_encryption(self.bucket.arn, args.kms_key_arn)]),
            opts=after(public_block),
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket_id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=after(policy),
        )
        if args.kms_key_arn is not None:
            default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn)
        else:
            default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256")
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket_id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default,
                # Bucket keys cut KMS requests (and their cost) by orders of magnitude at 1 TB/day.
                bucket_key_enabled=args.kms_key_arn is not None,
            )],
            opts=after(versioning),
        )
        hygiene = aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="bucket-hygiene", status="Enabled", filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=args.noncurrent_version_expiration_days),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=args.abort_incomplete_multipart_days),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True),
        )
        # Lifecycle rules on noncurrent versions need versioning in place first (named, not only chained).
        last: pulumi.Resource = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket_id,
            rules=[*(_rule_args(r) for r in args.lifecycle_rules), hygiene],
            transition_default_minimum_object_size="varies_by_storage_class" if args.transition_small_objects
            else "all_storage_classes_128K",
            opts=after(encryption, versioning),
        )
        if args.eventbridge_notifications:
            last = aws.s3.BucketNotification(f"{name}-eventbridge", bucket=bucket_id, eventbridge=True,
                                             opts=after(last))
        if args.access_log_bucket is not None:
            aws.s3.BucketLogging(
                f"{name}-access-logs", bucket=bucket_id, target_bucket=args.access_log_bucket,
                target_prefix=args.access_log_prefix or pulumi.Output.concat("s3/", bucket_id, "/"), opts=after(last),
            )
        self.name = self.bucket.bucket
        self.arn = self.bucket.arn
        self.register_outputs({"name": self.name, "arn": self.arn})


def _deny_plain_http(bucket_arn: pulumi.Input[str]) -> dict:
    return iam.deny_insecure_transport("s3", [bucket_arn, iam.objects_in(bucket_arn)])


def _deny_other_encryption(bucket_arn: pulumi.Input[str], kms_key_arn: Optional[pulumi.Input[str]]) -> list[dict]:
    """Uploads (PutObject, CopyObject, CreateMultipartUpload) that ask for another encryption than the
    bucket's default are refused; uploads without encryption headers get the default and pass.

    Each Deny tests a header only where it is present (``Null`` false): ``StringNotEquals`` alone is
    true for a missing header and would refuse every plain upload."""
    objects = iam.objects_in(bucket_arn)

    def deny(sid: str, condition: dict) -> dict:
        return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": objects,
                "Condition": condition}

    sse = "s3:x-amz-server-side-encryption"
    key_id = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    statements = [
        # SSE-C: the caller's own key, which nobody else (nor this stack's readers) holds.
        deny("DenyCustomerProvidedKeys", {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}),
    ]
    if kms_key_arn is None:
        statements.append(deny("DenyOtherEncryption", {"StringNotEquals": {sse: "AES256"}, "Null": {sse: "false"}}))
        return statements
    statements += [
        # AES256 (SSE-S3) or aws:kms:dsse instead of this bucket's SSE-KMS.
        deny("DenyOtherEncryption", {"StringNotEquals": {sse: "aws:kms"}, "Null": {sse: "false"}}),
        # Another KMS key; the header must name this key by its ARN (the condition key is of type ARN).
        deny("DenyOtherKmsKey", {"ArnNotEquals": {key_id: kms_key_arn}, "Null": {key_id: "false"}}),
        # aws:kms without a key id means the AWS managed key aws/s3, not the bucket's key (PutObject's
        # SSEKMSKeyId documentation for general purpose buckets).
        deny("DenyAwsManagedKey", {"StringEquals": {sse: "aws:kms"}, "Null": {key_id: "true"}}),
    ]
    return statements
