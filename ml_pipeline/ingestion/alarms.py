"""Ingestion's alarms: poison records in the dead-letter queue, a backlog that ingestion cannot keep up
with, function crashes, and the function's own metrics (access denied, permanent errors, statistics not
recorded). They are children of the ImageIngestion component."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

if TYPE_CHECKING:
    from ml_pipeline.ingestion.component import ImageIngestion


def ingestion_alarms(component: "ImageIngestion", name: str, name_prefix: str,
                     alarm_topic_arn: pulumi.Input[str], namespace: str, metrics) -> None:
    child = pulumi.ResourceOptions(parent=component)
    actions = dict(alarm_actions=[alarm_topic_arn], ok_actions=[alarm_topic_arn])
    aws.cloudwatch.MetricAlarm(
        f"{name}-dlq-not-empty", name=f"{name_prefix}-ingest-dlq-not-empty",
        alarm_description="Ingestion messages gave up after every retry (poison records or a persistent "
                          "AWS error); inspect and redrive the dead-letter queue",
        namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": component.dead_letter_queue.name}, statistic="Maximum", period=60,
        evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching", **actions, opts=child)
    aws.cloudwatch.MetricAlarm(
        f"{name}-backlog-age", name=f"{name_prefix}-ingest-backlog-age",
        alarm_description="Oldest raw image waiting over 15 minutes: ingestion cannot keep up",
        namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage",
        dimensions={"QueueName": component.queue.name}, statistic="Maximum", period=300, evaluation_periods=3,
        threshold=900, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
        **actions, opts=child)
    aws.cloudwatch.MetricAlarm(
        f"{name}-function-errors", name=f"{name_prefix}-ingest-function-errors",
        alarm_description="The ingest function crashed or timed out (whole batches return to the queue)",
        namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": component.function.name},
        statistic="Sum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching", **actions, opts=child)
    for metric, slug, why in (
        (metrics.ACCESS_DENIED, "access-denied",
         "S3 or KMS denied the ingest function (a policy or key is wrong); the records are retried, then the DLQ"),
        (metrics.PERMANENT_ERRORS, "permanent-errors",
         "AWS refused an image's key or item for good; it was recorded as rejected (or only logged) and not retried"),
        (metrics.STATISTICS_NOT_RECORDED, "statistics-not-recorded",
         "The daily statistics item missed a batch's counts; training's data validation will under-count that day"),
    ):
        aws.cloudwatch.MetricAlarm(
            f"{name}-{slug}", name=f"{name_prefix}-ingest-{slug}", alarm_description=why,
            namespace=namespace, metric_name=metric, statistic="Sum", period=300, evaluation_periods=1,
            threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            **actions, opts=child)
