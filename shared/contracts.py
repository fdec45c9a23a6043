"""Project names and the export contracts other projects read through StackReferences.

Each program exports exactly the keys of its contract (a test checks it), so a consumer can rely on them.
A contract is a tuple of export names plus a class with one typed property per export:

    training = GpuTrainingStack("acme/gpu-training/dev")
    training.private_subnet_ids          # Output[list[str]]
    pipeline = MlPipelineStack("acme/ml-pipeline/dev")
    pipeline.processed_bucket_name       # Output[str]
"""
from __future__ import annotations

from typing import Any

import pulumi

ML_PIPELINE_PROJECT = "ml-pipeline"
GPU_TRAINING_PROJECT = "gpu-training"

# How a user sets a key of each project from the repository root (ml-pipeline's Pulumi.yaml is the root one).
PROJECT_DIRECTORIES = {ML_PIPELINE_PROJECT: ".", GPU_TRAINING_PROJECT: "gpu_training"}


def config_set_command(project: str) -> str:
    directory = PROJECT_DIRECTORIES.get(project, ".")
    return "pulumi config set" if directory == "." else f"pulumi -C {directory} config set"

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
    "image_id",
    "start_training_document_name",
    "stop_training_document_name",
)

ML_PIPELINE_EXPORTS = (
    "raw_bucket_name",
    "raw_upload_prefix",
    "processed_bucket_name",
    "artifacts_bucket_name",
    "logs_bucket_name",
    "catalog_table_name",
    "data_kms_key_arn",
    "metadata_kms_key_arn",
    "ingest_queue_url",
    "ingest_dead_letter_queue_url",
    "ingest_function_name",
    "alarm_topic_arn",
    "training_state_machine_arn",
    "model_versions_table_name",
    "experiments_table_name",
    "model_package_group_name",
    "sagemaker_execution_role_arn",
    "endpoint_name",
    "deployment_state_machine_arn",
    "ab_tests_table_name",
    "inference_api_url",
    "inference_api_key_id",
    "predict_stream_name",
    "predictions_table_name",
    "serving_operator_role_arn",
)


def parse_stack_name(stack_name: str, project: str) -> tuple[str, str, str]:
    """``<org>/<project>/<stack>`` split into its parts; ValueError when it names another project."""
    parts = stack_name.split("/")
    if len(parts) != 3 or not all(parts) or parts[1] != project:
        raise ValueError(f"{stack_name!r} is not a {project} stack: use <org>/{project}/<stack>")
    return parts[0], parts[1], parts[2]


class _StackContract:
    project: str
    exports: tuple[str, ...]

    def __init__(self, stack_name: str, opts: pulumi.ResourceOptions | None = None):
        parse_stack_name(stack_name, self.project)
        self.stack_name = stack_name
        self.reference = pulumi.StackReference(stack_name, opts=opts)

    def get(self, key: str) -> pulumi.Output[Any]:
        if key not in self.exports:
            raise KeyError(f"{key!r} is not an output of {self.project}; its outputs: {', '.join(self.exports)}")
        return self.reference.require_output(key)


def _export(key: str) -> property:
    return property(lambda self: self.get(key), doc=f"The ``{key}`` output.")


class GpuTrainingStack(_StackContract):
    """Typed access to a deployed gpu-training stack, e.g. ``GpuTrainingStack("acme/gpu-training/dev")``."""

    project = GPU_TRAINING_PROJECT
    exports = GPU_TRAINING_EXPORTS
    training_data_bucket_name: pulumi.Output[str] = _export("training_data_bucket_name")
    artifacts_bucket_name: pulumi.Output[str] = _export("artifacts_bucket_name")
    experiments_table_name: pulumi.Output[str] = _export("experiments_table_name")
    fleet_id: pulumi.Output[str] = _export("fleet_id")
    instance_role_name: pulumi.Output[str] = _export("instance_role_name")
    instance_role_arn: pulumi.Output[str] = _export("instance_role_arn")
    vpc_id: pulumi.Output[str] = _export("vpc_id")
    private_subnet_ids: pulumi.Output[list[str]] = _export("private_subnet_ids")
    security_group_id: pulumi.Output[str] = _export("security_group_id")
    kms_key_arn: pulumi.Output[str] = _export("kms_key_arn")
    alarm_topic_arn: pulumi.Output[str] = _export("alarm_topic_arn")
    metric_namespace: pulumi.Output[str] = _export("metric_namespace")
    hparams_prefix: pulumi.Output[str] = _export("hparams_prefix")
    training_log_group_name: pulumi.Output[str] = _export("training_log_group_name")
    image_id: pulumi.Output[str] = _export("image_id")
    start_training_document_name: pulumi.Output[str] = _export("start_training_document_name")
    stop_training_document_name: pulumi.Output[str] = _export("stop_training_document_name")


class MlPipelineStack(_StackContract):
    """Typed access to a deployed ml-pipeline stack, e.g. ``MlPipelineStack("acme/ml-pipeline/prod")``."""

    project = ML_PIPELINE_PROJECT
    exports = ML_PIPELINE_EXPORTS
    raw_bucket_name: pulumi.Output[str] = _export("raw_bucket_name")
    raw_upload_prefix: pulumi.Output[str] = _export("raw_upload_prefix")
    processed_bucket_name: pulumi.Output[str] = _export("processed_bucket_name")
    artifacts_bucket_name: pulumi.Output[str] = _export("artifacts_bucket_name")
    logs_bucket_name: pulumi.Output[str] = _export("logs_bucket_name")
    catalog_table_name: pulumi.Output[str] = _export("catalog_table_name")
    data_kms_key_arn: pulumi.Output[str] = _export("data_kms_key_arn")
    metadata_kms_key_arn: pulumi.Output[str] = _export("metadata_kms_key_arn")
    ingest_queue_url: pulumi.Output[str] = _export("ingest_queue_url")
    ingest_dead_letter_queue_url: pulumi.Output[str] = _export("ingest_dead_letter_queue_url")
    ingest_function_name: pulumi.Output[str] = _export("ingest_function_name")
    alarm_topic_arn: pulumi.Output[str] = _export("alarm_topic_arn")
    training_state_machine_arn: pulumi.Output[str] = _export("training_state_machine_arn")
    model_versions_table_name: pulumi.Output[str] = _export("model_versions_table_name")
    experiments_table_name: pulumi.Output[str] = _export("experiments_table_name")
    model_package_group_name: pulumi.Output[str] = _export("model_package_group_name")
    sagemaker_execution_role_arn: pulumi.Output[str] = _export("sagemaker_execution_role_arn")
    endpoint_name: pulumi.Output[str] = _export("endpoint_name")
    deployment_state_machine_arn: pulumi.Output[str] = _export("deployment_state_machine_arn")
    ab_tests_table_name: pulumi.Output[str] = _export("ab_tests_table_name")
    inference_api_url: pulumi.Output[str] = _export("inference_api_url")
    inference_api_key_id: pulumi.Output[str] = _export("inference_api_key_id")
    predict_stream_name: pulumi.Output[str] = _export("predict_stream_name")
    predictions_table_name: pulumi.Output[str] = _export("predictions_table_name")
    serving_operator_role_arn: pulumi.Output[str] = _export("serving_operator_role_arn")
