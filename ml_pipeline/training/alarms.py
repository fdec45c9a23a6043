"""The training workflow's alarms: what its own failure path cannot report. A failed step records and
notifies by itself; an execution that times out, is aborted, or fails inside the failure path does not,
and the job-events function's dead-letter queue fills only when alarming itself failed."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws


def training_alarms(parent: pulumi.Resource, name: str, name_prefix: str, state_machine_arn: pulumi.Input[str],
                    events_dlq_name: pulumi.Input[str], alarm_topic_arn: pulumi.Input[str]) -> None:
    child = pulumi.ResourceOptions(parent=parent)
    actions = dict(alarm_actions=[alarm_topic_arn], ok_actions=[alarm_topic_arn])
    for metric, what in (("ExecutionsTimedOut", "timed out"), ("ExecutionsAborted", "was stopped by hand or API")):
        aws.cloudwatch.MetricAlarm(
            f"{name}-{metric.lower()}", name=f"{name_prefix}-training-{metric.lower()}",
            alarm_description=f"A training run {what}; its failure path did not run, so the experiments table "
                              "still shows it running",
            namespace="AWS/States", metric_name=metric, dimensions={"StateMachineArn": state_machine_arn},
            statistic="Sum", period=300, evaluation_periods=1, threshold=0,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", **actions, opts=child)
    aws.cloudwatch.MetricAlarm(
        f"{name}-job-events-dlq", name=f"{name_prefix}-training-job-events-dlq",
        alarm_description="SageMaker job events the alarm function could not handle after its retries",
        namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions={"QueueName": events_dlq_name},
        statistic="Maximum", period=300, evaluation_periods=1, threshold=0, comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching", **actions, opts=child)
