"""Fixtures for the training workflow tests: the functions with their environment, and one moto account per
test module (buckets, tables, alarm topic with a queue behind it, model package group), emptied per test."""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import boto3
import pytest
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ml_pipeline.training.component import MODEL_VERSIONS  # noqa: E402  (contract 4's schema, as deployed)
from shared.table import EXPERIMENTS as EXPERIMENTS_SCHEMA  # noqa: E402  (contract 9's schema, as deployed)
from training_support import (  # noqa: E402
    ARTIFACTS, CATALOG, ENVIRONMENT, EXPERIMENTS, FUNCTIONS, GROUP, PROCESSED, REGION, VERSIONS, World, load_function)


@pytest.fixture(scope="module")
def functions() -> Iterator[dict[str, ModuleType]]:
    """Each function loaded afresh for a test module (its cached clients belong to that module's moto)
    with its environment."""
    with pytest.MonkeyPatch.context() as patch:
        for env in ENVIRONMENT.values():
            for key, value in env.items():
                patch.setenv(key, value)
        yield {name: load_function(name) for name in FUNCTIONS}


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
        ddb.create_table(**MODEL_VERSIONS.create_table_request(VERSIONS))
        ddb.create_table(**EXPERIMENTS_SCHEMA.create_table_request(EXPERIMENTS))
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
