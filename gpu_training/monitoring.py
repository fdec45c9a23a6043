"""Fleet-level alarms that keep evaluating while Spot instances come and go.

Every alarm reads a fleet-wide metric (no InstanceId dimension), so replacing an instance never leaves
an alarm watching a metric that stopped existing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from gpu_training.metrics import (FLEET_AGGREGATE_DIMENSIONS, FLEET_GPU_UTILIZATION_METRIC, GPU_ERROR_COUNT_METRIC,
                                  HEARTBEAT_METRIC, HEARTBEAT_PERIOD_S, check_metrics_interval, fleet_dimensions,
                                  heartbeats_per_period)


@dataclass(frozen=True)
class FleetAlarmsArgs:
    """Metric names and dimensions come from gpu_training.metrics, which the instances publish by."""

    fleet_name: str
    namespace: str
    alarm_topic_arn: pulumi.Input[str]
    target_capacity: int
    low_utilization_percent: float
    metrics_interval_s: int

    def __post_init__(self) -> None:
        if self.target_capacity < 1:
            raise ValueError("FleetAlarmsArgs.target_capacity must be >= 1")
        if not 0 <= self.low_utilization_percent <= 100:
            raise ValueError("FleetAlarmsArgs.low_utilization_percent must be 0 to 100")
        problem = check_metrics_interval(self.metrics_interval_s)
        if problem:
            raise ValueError(f"FleetAlarmsArgs.metrics_interval_s={problem}")


class FleetAlarms(pulumi.ComponentResource):
    def __init__(self, name: str, args: FleetAlarmsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:monitoring:FleetAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        actions = dict(alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn])
        fleet = fleet_dimensions(args.fleet_name)

        aws.cloudwatch.MetricAlarm(
            f"{name}-gpu-utilization-low", name=f"{args.fleet_name}-gpu-utilization-low",
            alarm_description=f"Fleet-average GPU utilization below {args.low_utilization_percent}% for 30 minutes: "
                              "the fleet is paid for but idle (stuck input pipeline, finished job?)",
            namespace=args.namespace, metric_name=FLEET_GPU_UTILIZATION_METRIC, dimensions=dict(FLEET_AGGREGATE_DIMENSIONS),
            statistic="Average", period=300, evaluation_periods=6, threshold=args.low_utilization_percent,
            comparison_operator="LessThanThreshold", treat_missing_data="notBreaching", **actions, opts=child)

        aws.cloudwatch.MetricAlarm(
            f"{name}-gpu-metrics-missing", name=f"{args.fleet_name}-gpu-metrics-missing",
            alarm_description="No GPU metrics from any fleet instance for 15 minutes (agent down, driver broken, "
                              "or no instances)",
            namespace=args.namespace, metric_name=FLEET_GPU_UTILIZATION_METRIC, dimensions=dict(FLEET_AGGREGATE_DIMENSIONS),
            statistic="SampleCount", period=300, evaluation_periods=3, threshold=1,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching", **actions, opts=child)

        # Each live instance sends one heartbeat per interval (at most one a minute), so the Sum over a
        # period counts the instances; half an instance of slack absorbs a heartbeat that straddles a
        # period boundary.
        per_instance = heartbeats_per_period(args.metrics_interval_s)
        aws.cloudwatch.MetricAlarm(
            f"{name}-capacity-below-target", name=f"{args.fleet_name}-capacity-below-target",
            alarm_description=f"Fewer than {args.target_capacity} fleet instances reporting for 15 minutes "
                              "(Spot capacity short in every pool, or instances failing to bootstrap)",
            namespace=args.namespace, metric_name=HEARTBEAT_METRIC, dimensions=fleet,
            statistic="Sum", period=HEARTBEAT_PERIOD_S, evaluation_periods=3,
            threshold=(args.target_capacity - 0.5) * per_instance,
            comparison_operator="LessThanThreshold", treat_missing_data="breaching", **actions, opts=child)

        aws.cloudwatch.MetricAlarm(
            f"{name}-gpu-errors", name=f"{args.fleet_name}-gpu-errors",
            alarm_description="A fleet instance reports GPU errors (uncorrectable ECC, lost GPU, nvidia-smi failing)",
            namespace=args.namespace, metric_name=GPU_ERROR_COUNT_METRIC, dimensions=fleet,
            statistic="Maximum", period=300, evaluation_periods=1, threshold=0,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", **actions, opts=child)
        self.register_outputs({})
