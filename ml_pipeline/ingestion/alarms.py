"""Ingestion's alarms: poison records in the dead-letter queue, a backlog that ingestion cannot keep up
with, and function crashes. They are children of the ImageIngestion component."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

if TYPE_CHECKING:
    from ml_pipeline.ingestion.component import ImageIngestion


def ingestion_alarms(component: "ImageIngestion", name: str, name_prefix: str,
                     alarm_topic_arn: pulumi.Input[str]) -> None:
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
