"""Training workflow, after the decision: publish the run's custom metrics (contract 8).

``ModelAccuracy`` (the candidate's accuracy on the test split, approved or not), and from
DescribeTrainingJob of the candidate's training job ``TrainingDurationSeconds`` (TrainingTimeInSeconds)
and ``SpotSavingsPercent`` (the saving SageMaker reports for managed Spot: 1 - billable / training time;
0 for on-demand). One PutMetricData per run, dimension ModelName, in the stack's namespace.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

import boto3

logger = logging.getLogger()
# The names ml_pipeline/metric_names.py lists (a test checks they agree: this zip holds only this folder).
MODEL_ACCURACY = "ModelAccuracy"
TRAINING_DURATION_SECONDS = "TrainingDurationSeconds"
SPOT_SAVINGS_PERCENT = "SpotSavingsPercent"
DIMENSION = "ModelName"
UNITS = {MODEL_ACCURACY: "None", TRAINING_DURATION_SECONDS: "Seconds", SPOT_SAVINGS_PERCENT: "Percent"}


@lru_cache(maxsize=1)
def _sagemaker():
    return boto3.client("sagemaker")


@lru_cache(maxsize=1)
def _cloudwatch():
    return boto3.client("cloudwatch")


def job_figures(job: dict[str, Any]) -> dict[str, float]:
    """Duration and Spot saving of a described training job; absent while SageMaker has no times for it."""
    training = job.get("TrainingTimeInSeconds")
    if not training:
        return {}
    billable = job.get("BillableTimeInSeconds", training)
    saved = max(0.0, 100.0 * (1.0 - float(billable) / float(training)))
    return {TRAINING_DURATION_SECONDS: float(training), SPOT_SAVINGS_PERCENT: round(saved, 2)}


def metric_data(model_name: str, accuracy: float, figures: dict[str, float]) -> list[dict[str, Any]]:
    dims = [{"Name": DIMENSION, "Value": model_name}]
    values = {MODEL_ACCURACY: float(accuracy), **figures}
    return [{"MetricName": name, "Dimensions": dims, "Value": value, "Unit": UNITS[name]}
            for name, value in values.items()]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    model_name = os.environ["MODEL_NAME"]
    job = _sagemaker().describe_training_job(TrainingJobName=event["training_job_name"])
    data = metric_data(model_name, event["candidate_accuracy"], job_figures(job))
    _cloudwatch().put_metric_data(Namespace=os.environ["METRIC_NAMESPACE"], MetricData=data)
    published = {d["MetricName"]: d["Value"] for d in data}
    logger.info("training metrics", extra={"training_job_name": event["training_job_name"], **published})
    return {"published": published}
