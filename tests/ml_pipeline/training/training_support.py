"""Helpers for the training workflow tests: names of the moto world, the functions loaded from
functions/training_* and a sample WorkflowSpec (a module with its own name: conftest.py files clash)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ml_pipeline.training import definition

REPO = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
ACCOUNT = "123456789012"
PROCESSED = "processed-bucket"
ARTIFACTS = "artifacts-bucket"
CATALOG = "catalog"
VERSIONS = "model-versions"
EXPERIMENTS = "experiments"
MODEL = "image-classifier"
GROUP = f"mlp-test-{MODEL}"
JOB_PREFIX = "mlp-test"
SHARD_PREFIX = "shards/"
FUNCTIONS = ("validate", "snapshot", "decide", "register", "metrics", "job_events")
NAMESPACE = "MLPlatform/ml-pipeline-test"

ENVIRONMENT = {
    "validate": {"CATALOG_TABLE": CATALOG, "WINDOW_DAYS": "3", "MIN_IMAGES": "100", "MIN_CLASS_SHARE": "0.1",
                 "MAX_QUARANTINE_RATE": "0.2"},
    "snapshot": {"PROCESSED_BUCKET": PROCESSED, "SHARD_PREFIX": SHARD_PREFIX, "ARTIFACTS_BUCKET": ARTIFACTS,
                 "SNAPSHOT_PREFIX": "snapshots/", "OUTPUT_PREFIX": "training/", "JOB_PREFIX": JOB_PREFIX,
                 "VALIDATION_SHARE": "0.1", "TEST_SHARE": "0.1"},
    "decide": {"APPROVAL_THRESHOLD": "0.8", "APPROVAL_TOLERANCE": "0.01"},
    "register": {"VERSIONS_TABLE": VERSIONS, "MODEL_NAME": MODEL, "MODEL_PACKAGE_GROUP": GROUP,
                 "INFERENCE_IMAGE": f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"},
    "metrics": {"MODEL_NAME": MODEL, "METRIC_NAMESPACE": NAMESPACE},
    "job_events": {"ALARM_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms"},
}


def load_function(name: str) -> ModuleType:
    """functions/training_<name>/handler.py under a unique module name (every function has a handler.py)."""
    path = REPO / "functions" / f"training_{name}" / "handler.py"
    spec = importlib.util.spec_from_file_location(f"training_{name}_handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:training-{name.replace('_', '-')}"


def sample_spec(**changes: Any) -> definition.WorkflowSpec:
    spec = definition.WorkflowSpec(
        model_name=MODEL, validate_function_arn=function_arn("validate"),
        snapshot_function_arn=function_arn("snapshot"), decide_function_arn=function_arn("decide"),
        register_function_arn=function_arn("register"), metrics_function_arn=function_arn("metrics"),
        experiments_table=EXPERIMENTS, versions_table=VERSIONS,
        alarm_topic_arn=ENVIRONMENT["job_events"]["ALARM_TOPIC_ARN"],
        execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution",
        training_image=f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-training:2.5.1-gpu-py311",
        evaluation_image=f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-training:2.5.1-cpu-py311",
        code_url=f"s3://{ARTIFACTS}/code/0123456789abcdef/sourcedir.tar.gz", models_url=f"s3://{ARTIFACTS}/training/models/",
        data_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555",
        subnet_ids=("subnet-0123456789abcdef0", "subnet-0123456789abcdef1"), security_group_ids=("sg-0123456789abcdef0",),
        instance_type="ml.g5.xlarge", instance_count=1, volume_gb=50, max_runtime_s=14400, max_wait_s=28800, spot=True,
        hyperparameters={"architecture": "small", "batch_size": "64", "checkpoint_steps": "200", "epochs": "10",
                         "image_size": "512", "learning_rate": "0.001"},
        tuning_ranges={"learning_rate": {"type": "continuous", "min": 0.0001, "max": 0.1, "scaling": "Logarithmic"},
                       "batch_size": {"type": "categorical", "values": ["32", "64"]},
                       "epochs": {"type": "integer", "min": 5, "max": 20}},
        tuning_max_jobs=8, tuning_max_parallel_jobs=2, evaluation_instance_type="ml.m5.xlarge",
        evaluation_max_runtime_s=3600)
    return replace(spec, **changes)


@dataclass
class World:
    s3: Any
    ddb: Any
    sfn: Any
    sagemaker: Any
    sqs: Any
    alarm_queue_url: str
