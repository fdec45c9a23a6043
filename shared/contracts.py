"""Project names and the export contracts other projects read through StackReferences.

Each program exports exactly the keys listed here (a test checks it), so a consumer can rely on them.
"""
from __future__ import annotations

import pulumi

ML_PIPELINE_PROJECT = "ml-pipeline"
GPU_TRAINING_PROJECT = "gpu-training"

GPU_TRAINING_EXPORTS = (
    "training_data_bucket_name",
    "artifacts_bucket_name",
    "experiments_table_name",
    "fleet_id",
    "instance_role_name",
    "instance_role_arn",
    "vpc_id",
    "private_subnet_ids",
    "security_group_id",
    "kms_key_arn",
    "alarm_topic_arn",
    "metric_namespace",
    "hparams_prefix",
    "training_log_group_name",
)


class GpuTrainingStack:
    """Typed access to a deployed gpu-training stack, e.g. ``GpuTrainingStack("acme/gpu-training/dev")``."""

    def __init__(self, stack_name: str, opts: pulumi.ResourceOptions | None = None):
        parts = stack_name.split("/")
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != GPU_TRAINING_PROJECT):
            raise ValueError(f"{stack_name!r} is not a {GPU_TRAINING_PROJECT} stack: use <org>/{GPU_TRAINING_PROJECT}/<stack>")
        self.reference = pulumi.StackReference(stack_name, opts=opts)

    def _get(self, key: str) -> pulumi.Output:
        assert key in GPU_TRAINING_EXPORTS, key
        return self.reference.require_output(key)

    @property
    def instance_role_arn(self) -> pulumi.Output[str]:
        return self._get("instance_role_arn")

    @property
    def kms_key_arn(self) -> pulumi.Output[str]:
        return self._get("kms_key_arn")

    @property
    def metric_namespace(self) -> pulumi.Output[str]:
        return self._get("metric_namespace")

    @property
    def artifacts_bucket_name(self) -> pulumi.Output[str]:
        return self._get("artifacts_bucket_name")
