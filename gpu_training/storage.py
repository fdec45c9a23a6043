"""Training data and model artifact buckets and the experiments table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from shared.bucket import LifecycleRule, SecureBucket, SecureBucketArgs, Transition
from shared.table import EXPERIMENTS, Table, TableArgs

# glacierStorageClass -> S3 storage class. Instant Retrieval is the default because GetObject reads
# it directly: the trainer and the run script read old training data, scripts and checkpoints. The
# other two need a RestoreObject (hours) before any read.
GLACIER_CLASSES = {"instant": "GLACIER_IR", "flexible": "GLACIER", "deep-archive": "DEEP_ARCHIVE"}


@dataclass(frozen=True)
class TrainingStorageArgs:
    training_data_bucket_name: pulumi.Input[str]
    artifacts_bucket_name: pulumi.Input[str]
    experiments_table_name: str
    kms_key_arn: pulumi.Input[str]
    glacier_after_days: int = 30
    glacier_storage_class: str = "GLACIER_IR"
    noncurrent_version_days: int = 30
    deletion_protection: bool = False

    def __post_init__(self) -> None:
        if self.glacier_storage_class not in GLACIER_CLASSES.values():
            raise ValueError(f"TrainingStorageArgs.glacier_storage_class must be one of "
                             f"{sorted(GLACIER_CLASSES.values())}, got {self.glacier_storage_class!r}")


class TrainingStorage(pulumi.ComponentResource):
    training_data: SecureBucket
    artifacts: SecureBucket
    experiments: Table

    def __init__(self, name: str, args: TrainingStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:storage:TrainingStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # A Glacier class after N days. Small objects: Flexible Retrieval and Deep Archive take them
        # (checkpoint shards and metrics files are often under 128 KB); Instant Retrieval keeps S3's
        # 128 KB floor, so they stay in Standard instead of being billed as 128 KB.
        archive = LifecycleRule(id="archive",
                                transitions=(Transition(args.glacier_after_days, args.glacier_storage_class),))
        bucket_args = dict(kms_key_arn=args.kms_key_arn, lifecycle_rules=(archive,), transition_small_objects=True,
                           noncurrent_version_expiration_days=args.noncurrent_version_days)
        self.training_data = SecureBucket(f"{name}-training-data",
                                          SecureBucketArgs(bucket_name=args.training_data_bucket_name, **bucket_args),
                                          opts=child)
        self.artifacts = SecureBucket(f"{name}-artifacts",
                                      SecureBucketArgs(bucket_name=args.artifacts_bucket_name, **bucket_args), opts=child)
        self.experiments = Table(f"{name}-experiments", TableArgs(
            table_name=args.experiments_table_name,
            kms_key_arn=args.kms_key_arn,
            **EXPERIMENTS.table_args(),
            deletion_protection=args.deletion_protection,
        ), opts=child)
        self.register_outputs({"training_data_bucket": self.training_data.name, "artifacts_bucket": self.artifacts.name,
                               "experiments_table": self.experiments.name})
