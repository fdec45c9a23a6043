"""Fixtures for the training workflow: its functions loaded from functions/training_*, a sample spec, and
a moto world (buckets, tables, topic, functions, model package group) the workflow runs against."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws

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
FUNCTIONS = ("validate", "snapshot", "decide", "register", "job_events")

ENVIRONMENT = {
    "validate": {"CATALOG_TABLE": CATALOG, "WINDOW_DAYS": "3", "MIN_IMAGES": "100", "MIN_CLASS_SHARE": "0.1",
                 "MAX_QUARANTINE_RATE": "0.2"},
    "snapshot": {"PROCESSED_BUCKET": PROCESSED, "SHARD_PREFIX": SHARD_PREFIX, "ARTIFACTS_BUCKET": ARTIFACTS,
                 "SNAPSHOT_PREFIX": "snapshots/", "OUTPUT_PREFIX": "training/", "JOB_PREFIX": JOB_PREFIX,
                 "VALIDATION_SHARE": "0.1", "TEST_SHARE": "0.1"},
    "decide": {"APPROVAL_THRESHOLD": "0.8", "APPROVAL_TOLERANCE": "0.01"},
    "register": {"VERSIONS_TABLE": VERSIONS, "MODEL_NAME": MODEL, "MODEL_PACKAGE_GROUP": GROUP,
                 "INFERENCE_IMAGE": f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"},
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
        register_function_arn=function_arn("register"), experiments_table=EXPERIMENTS, versions_table=VERSIONS,
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


@pytest.fixture(scope="module")
def functions() -> Iterator[dict[str, ModuleType]]:
    """Each function loaded afresh for a test module (its cached clients belong to that module's moto)
    with its environment."""
    with pytest.MonkeyPatch.context() as patch:
        for env in ENVIRONMENT.values():
            for key, value in env.items():
                patch.setenv(key, value)
        yield {name: load_function(name) for name in FUNCTIONS}


@dataclass
class World:
    s3: Any
    ddb: Any
    sfn: Any
    sagemaker: Any
    sqs: Any
    alarm_queue_url: str


@pytest.fixture(scope="module")
def world(functions) -> Iterator[World]:
    """One moto account per test module (starting one costs about a second of service-model loading);
    ``clean_world`` empties it between tests."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (PROCESSED, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(TableName=CATALOG, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "partition_date", "AttributeType": "S"},
                                               {"AttributeName": "image_id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "partition_date", "KeyType": "HASH"},
                                    {"AttributeName": "image_id", "KeyType": "RANGE"}])
        ddb.create_table(TableName=VERSIONS, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "model_name", "AttributeType": "S"},
                                               {"AttributeName": "version", "AttributeType": "N"},
                                               {"AttributeName": "status", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "model_name", "KeyType": "HASH"},
                                    {"AttributeName": "version", "KeyType": "RANGE"}],
                         GlobalSecondaryIndexes=[{"IndexName": "status-index", "Projection": {"ProjectionType": "ALL"},
                                                  "KeySchema": [{"AttributeName": "model_name", "KeyType": "HASH"},
                                                                {"AttributeName": "status", "KeyType": "RANGE"}]}])
        ddb.create_table(TableName=EXPERIMENTS, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "experiment_id", "AttributeType": "S"},
                                               {"AttributeName": "run_id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "experiment_id", "KeyType": "HASH"},
                                    {"AttributeName": "run_id", "KeyType": "RANGE"}])
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="alarm-mail")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        # No Lambda functions are created: the execution tests answer invokes with the real handlers.
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
        yield World(s3=s3, ddb=ddb, sfn=boto3.client("stepfunctions", region_name=REGION), sagemaker=sagemaker,
                    sqs=sqs, alarm_queue_url=queue_url)


@pytest.fixture
def clean_world(world: World) -> World:
    for table, key in ((CATALOG, ("partition_date", "image_id")), (VERSIONS, ("model_name", "version")),
                       (EXPERIMENTS, ("experiment_id", "run_id"))):
        for item in world.ddb.scan(TableName=table)["Items"]:
            world.ddb.delete_item(TableName=table, Key={k: item[k] for k in key})
    for bucket in (PROCESSED, ARTIFACTS):
        for obj in world.s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            world.s3.delete_object(Bucket=bucket, Key=obj["Key"])
    # PurgeQueue may run once a minute: drain instead.
    while messages := world.sqs.receive_message(QueueUrl=world.alarm_queue_url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            world.sqs.delete_message(QueueUrl=world.alarm_queue_url, ReceiptHandle=message["ReceiptHandle"])
    return world
