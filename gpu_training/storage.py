"""Training data and model artifact buckets and the experiments table."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from shared.bucket import LifecycleRule, SecureBucket, SecureBucketArgs, Transition
from shared.table import Index, Table, TableArgs


@dataclass(frozen=True)
class TrainingStorageArgs:
    training_data_bucket_name: pulumi.Input[str]
    artifacts_bucket_name: pulumi.Input[str]
    experiments_table_name: str
    kms_key_arn: pulumi.Input[str]
    glacier_after_days: int = 30
    noncurrent_version_days: int = 30
    deletion_protection: bool = False


class TrainingStorage(pulumi.ComponentResource):
    training_data: SecureBucket
    artifacts: SecureBucket
    experiments: Table

    def __init__(self, name: str, args: TrainingStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:storage:TrainingStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Glacier Flexible Retrieval after N days, small objects included (checkpoint shards and
        # metrics files are often under S3's default 128 KB transition floor).
        archive = LifecycleRule(id="archive", transitions=(Transition(args.glacier_after_days, "GLACIER"),))
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
            hash_key="experiment_id",
            range_key="run_id",
            attributes={"experiment_id": "S", "run_id": "S", "status": "S", "started_at": "S"},
            # "Which runs are RUNNING / FAILED, newest first" across experiments.
            indexes=(Index(name="status-started_at-index", hash_key="status", range_key="started_at"),),
            deletion_protection=args.deletion_protection,
        ), opts=child)
        self.register_outputs({"training_data_bucket": self.training_data.name, "artifacts_bucket": self.artifacts.name,
                               "experiments_table": self.experiments.name})
