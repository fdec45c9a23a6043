"""Alarm arguments as data: CloudWatch MetricAlarm keyword arguments (pulumi-aws names), built from
names that may still be Outputs. The component creates one MetricAlarm per spec; tests validate the
recorded inputs against botocore's PutMetricAlarm model."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

Dimensions = Mapping[str, pulumi.Input[str]]


def query_metric(query_id: str, namespace: str, name: str, dimensions: Dimensions, stat: str, period: int, *,
                 return_data: bool = False) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id, return_data=return_data,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=namespace, metric_name=name, dimensions=dict(dimensions), stat=stat, period=period))


def query_expression(query_id: str, expression: str, label: str, *, return_data: bool = True
                     ) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(id=query_id, expression=expression, label=label,
                                                     return_data=return_data)


def anomaly_band(name: str, description: str, namespace: str, metric_name: str, dimensions: Dimensions, stat: str,
                 *, band_width: float, comparison: str, period: int = 300, evaluation_periods: int = 3) -> dict[str, Any]:
    """An alarm on a metric leaving its anomaly-detection band (CloudWatch trains the model itself)."""
    return dict(
        name=name, alarm_description=description, comparison_operator=comparison,
        evaluation_periods=evaluation_periods, datapoints_to_alarm=evaluation_periods, threshold_metric_id="band",
        metric_queries=[
            query_metric("m1", namespace, metric_name, dimensions, stat, period, return_data=True),
            query_expression("band", f"ANOMALY_DETECTION_BAND(m1, {band_width:g})", f"{metric_name} expected band"),
        ],
        treat_missing_data="notBreaching")


def error_rate(name: str, description: str, namespace: str, errors: Sequence[str], total: str,
               dimensions: Dimensions, *, percent: float, period: int = 60, evaluation_periods: int = 3,
               datapoints: Optional[int] = None) -> dict[str, Any]:
    """100 * sum(errors) / total, 0 when there was no traffic (metric math)."""
    queries = [query_metric("total", namespace, total, dimensions, "Sum", period)]
    queries += [query_metric(f"e{i}", namespace, e, dimensions, "Sum", period) for i, e in enumerate(errors)]
    summed = " + ".join(f"FILL(e{i}, 0)" for i in range(len(errors)))
    queries.append(query_expression("rate", f"IF(total > 0, 100 * ({summed}) / total, 0)",
                                    f"{' + '.join(errors)} per {total} (%)"))
    return dict(
        name=name, alarm_description=description, comparison_operator="GreaterThanThreshold", threshold=percent,
        evaluation_periods=evaluation_periods, datapoints_to_alarm=datapoints or evaluation_periods,
        metric_queries=queries, treat_missing_data="notBreaching")


def threshold(name: str, description: str, namespace: str, metric_name: str, dimensions: Dimensions, stat: str,
              value: float, *, period: int = 60, evaluation_periods: int = 1, comparison: str = "GreaterThanThreshold",
              missing: str = "notBreaching") -> dict[str, Any]:
    return dict(
        name=name, alarm_description=description, namespace=namespace, metric_name=metric_name,
        dimensions=dict(dimensions), statistic=stat, period=period, evaluation_periods=evaluation_periods,
        threshold=value, comparison_operator=comparison, treat_missing_data=missing)


def summed(name: str, description: str, namespace: str, metric_names: Sequence[str], dimensions: Dimensions, *,
           period: int = 300) -> dict[str, Any]:
    """Alarm when the sum of several count metrics is above zero in one period."""
    queries = [query_metric(f"m{i}", namespace, m, dimensions, "Sum", period) for i, m in enumerate(metric_names)]
    queries.append(query_expression("total", " + ".join(f"FILL(m{i}, 0)" for i in range(len(metric_names))),
                                    " + ".join(metric_names)))
    return dict(
        name=name, alarm_description=description, comparison_operator="GreaterThanThreshold", threshold=0,
        evaluation_periods=1, metric_queries=queries, treat_missing_data="notBreaching")
