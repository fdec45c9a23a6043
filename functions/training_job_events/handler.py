"""SageMaker training and processing job state changes of this pipeline: log each, alarm on failures.

EventBridge delivers the events (rules match this stack's job-name prefix); every event becomes one
structured log line (the record), and a Failed or Stopped job publishes to the alarm topic.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Any

import boto3

logger = logging.getLogger()
ALARMING = {"Failed", "Stopped"}


@lru_cache(maxsize=1)
def _sns():
    return boto3.client("sns")


def summary(event: dict[str, Any]) -> dict[str, Any]:
    detail = event.get("detail", {})
    kind = "processing" if "ProcessingJobName" in detail else "training"
    return {"kind": kind,
            "job_name": detail.get("ProcessingJobName") or detail.get("TrainingJobName", "?"),
            "status": detail.get("ProcessingJobStatus") or detail.get("TrainingJobStatus", "?"),
            "reason": detail.get("FailureReason") or detail.get("ExitMessage") or "",
            "secondary_status": detail.get("SecondaryStatus", "")}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    info = summary(event)
    logger.info("sagemaker job state", extra=info)
    if info["status"] in ALARMING:
        _sns().publish(TopicArn=os.environ["ALARM_TOPIC_ARN"],
                       Subject=f"SageMaker {info['kind']} job {info['status']}"[:100],
                       Message=f"{info['kind']} job {info['job_name']} is {info['status']}: {info['reason']}")
    return info
