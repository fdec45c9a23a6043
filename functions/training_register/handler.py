"""Training workflow, step 6: register the evaluated candidate, approved or rejected.

Creates a SageMaker model package in the model's group (approval status from the decision, the
evaluation report attached as model quality statistics) and the model-version item of contract 4,
numbered one above the model's latest version (a conditional put, so two runs never share a number).
A retried invocation finds the item of its training job and returns it instead of registering twice.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any, Optional

import boto3
from boto3.dynamodb.conditions import Attr, Key

logger = logging.getLogger()
CONTENT_TYPES = ["application/json", "application/x-image"]   # contract 5
MAX_ATTEMPTS = 5


@lru_cache(maxsize=1)
def _sagemaker():
    return boto3.client("sagemaker")


@lru_cache(maxsize=1)
def _versions():
    return boto3.resource("dynamodb").Table(os.environ["VERSIONS_TABLE"])


def training_metrics(training_job_name: str) -> dict[str, float]:
    job = _sagemaker().describe_training_job(TrainingJobName=training_job_name)
    return {m["MetricName"]: float(m["Value"]) for m in job.get("FinalMetricDataList", [])}


def metadata_value(value: str) -> str:
    """A model package's metadata value: 1-256 of letters, digits, spaces and ``_.:/=+-@``. An execution name
    may hold other characters (``(``, ``!``, ``'``...), which CreateModelPackage would refuse after the training."""
    return re.sub(r"[^\w .:/=+\-@]", "-", value)[:256] or "-"


def _existing(model_name: str, training_job_name: str) -> Optional[dict[str, Any]]:
    answer = _versions().query(KeyConditionExpression=Key("model_name").eq(model_name), ScanIndexForward=False,
                               Limit=20, FilterExpression=Attr("training_job_name").eq(training_job_name))
    return answer["Items"][0] if answer["Items"] else None


def _result(item: dict[str, Any]) -> dict[str, Any]:
    return {"version": int(item["version"]), "status": item["status"], "model_package_arn": item["model_package_arn"],
            "model_data_url": item["model_data_url"], "image_uri": item["image_uri"],
            "metrics": {k: float(v) for k, v in item["metrics"].items()}}


def register(event: dict[str, Any], model_name: str, group: str, image_uri: str) -> dict[str, Any]:
    found = _existing(model_name, event["training_job_name"])
    if found:
        logger.info("already registered", extra={"version": int(found["version"])})
        return _result(found)
    decision = event["decision"]
    approved = bool(decision["approved"])
    metrics = training_metrics(event["training_job_name"])
    metrics["test:accuracy"] = float(decision["candidate_accuracy"])
    package = _sagemaker().create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"run {event['run_id']}: {decision['reason']}"[:1024],
        InferenceSpecification={"Containers": [{"Image": image_uri, "ModelDataUrl": event["model_data_url"]}],
                                "SupportedContentTypes": CONTENT_TYPES,
                                "SupportedResponseMIMETypes": ["application/json"]},
        ModelApprovalStatus="Approved" if approved else "Rejected",
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": event["evaluation_url"]}}},
        CustomerMetadataProperties={k: metadata_value(event[k]) for k in ("snapshot_id", "run_id", "training_job_name")},
    )
    arn = package["ModelPackageArn"]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    item = {
        "model_name": model_name, "status": "approved" if approved else "rejected",
        "model_data_url": event["model_data_url"], "image_uri": image_uri, "snapshot_id": event["snapshot_id"],
        "metrics": {k: Decimal(str(v)) for k, v in metrics.items()}, "training_job_name": event["training_job_name"],
        "model_package_arn": arn, "evaluation_report_url": event["evaluation_url"], "run_id": event["run_id"],
        "decision_reason": decision["reason"], "created_at": now, "updated_at": now,
    }
    for _ in range(MAX_ATTEMPTS):
        item["version"] = _latest_version(model_name) + 1
        try:
            _versions().put_item(Item=item, ConditionExpression="attribute_not_exists(version)")
            break
        except _versions().meta.client.exceptions.ConditionalCheckFailedException:
            logger.warning("version taken, trying the next", extra={"version": item["version"]})
    else:
        raise RuntimeError(f"no free version number for {model_name} after {MAX_ATTEMPTS} attempts")
    logger.info("registered", extra={"model_name": model_name, "version": item["version"], "status": item["status"],
                                     "model_package_arn": arn})
    return _result(item)


def _latest_version(model_name: str) -> int:
    answer = _versions().query(KeyConditionExpression=Key("model_name").eq(model_name), ScanIndexForward=False,
                               Limit=1, ProjectionExpression="version")
    return int(answer["Items"][0]["version"]) if answer["Items"] else 0


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return register(event, os.environ["MODEL_NAME"], os.environ["MODEL_PACKAGE_GROUP"], os.environ["INFERENCE_IMAGE"])
