"""Recorded MetricAlarm / CompositeAlarm inputs turned into the PutMetricAlarm / PutCompositeAlarm
requests the provider sends, checked against botocore's cloudwatch model: required and unknown keys,
types, ranges (ParamValidator) and, walked here, enums and maximums (ParamValidator skips those)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from botocore.validate import ParamValidator
from tests.botocore_models import service_model


@lru_cache(maxsize=1)
def _model():
    return service_model("cloudwatch")


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _dims(dims: dict | None) -> list[dict]:
    return [{"Name": k, "Value": v} for k, v in (dims or {}).items()]


def put_metric_alarm(i: dict) -> dict:
    p: dict[str, Any] = {"AlarmName": i["name"], "ComparisonOperator": i["comparisonOperator"],
                         "EvaluationPeriods": _int(i["evaluationPeriods"])}
    simple = {"alarmDescription": "AlarmDescription", "treatMissingData": "TreatMissingData",
              "thresholdMetricId": "ThresholdMetricId", "namespace": "Namespace", "metricName": "MetricName",
              "statistic": "Statistic", "extendedStatistic": "ExtendedStatistic", "unit": "Unit",
              "evaluateLowSampleCountPercentiles": "EvaluateLowSampleCountPercentile",
              "alarmActions": "AlarmActions", "okActions": "OKActions",
              "insufficientDataActions": "InsufficientDataActions", "actionsEnabled": "ActionsEnabled"}
    for key, api in simple.items():
        if i.get(key) is not None:
            p[api] = i[key]
    for key, api in (("threshold", "Threshold"), ("period", "Period"), ("datapointsToAlarm", "DatapointsToAlarm")):
        if i.get(key) is not None:
            p[api] = _int(i[key]) if api != "Threshold" else float(i[key])
    if i.get("dimensions"):
        p["Dimensions"] = _dims(i["dimensions"])
    if i.get("tags"):
        p["Tags"] = [{"Key": k, "Value": v} for k, v in i["tags"].items()]
    if i.get("metricQueries"):
        queries = []
        for q in i["metricQueries"]:
            item: dict[str, Any] = {"Id": q["id"]}
            for key, api in (("expression", "Expression"), ("label", "Label"), ("returnData", "ReturnData"),
                             ("accountId", "AccountId")):
                if q.get(key) is not None:
                    item[api] = q[key]
            if q.get("period") is not None:
                item["Period"] = _int(q["period"])
            if q.get("metric"):
                m = q["metric"]
                stat = {"Metric": {"Namespace": m["namespace"], "MetricName": m["metricName"],
                                   "Dimensions": _dims(m.get("dimensions"))},
                        "Period": _int(m["period"]), "Stat": m["stat"]}
                if m.get("unit"):
                    stat["Unit"] = m["unit"]
                item["MetricStat"] = stat
            queries.append(item)
        p["Metrics"] = queries
    return p


def put_composite_alarm(i: dict) -> dict:
    p = {"AlarmName": i["alarmName"], "AlarmRule": i["alarmRule"]}
    for key, api in (("alarmDescription", "AlarmDescription"), ("alarmActions", "AlarmActions"),
                     ("okActions", "OKActions"), ("actionsEnabled", "ActionsEnabled")):
        if i.get(key) is not None:
            p[api] = i[key]
    if i.get("tags"):
        p["Tags"] = [{"Key": k, "Value": v} for k, v in i["tags"].items()]
    return p


def _walk(shape, value, path: str, out: list[str]) -> None:
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                _walk(member, value[key], f"{path}.{key}", out)
    elif shape.type_name == "list" and isinstance(value, list):
        for n, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{n}]", out)
    elif shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            out.append(f"{path}={value!r} not in {shape.name} ({', '.join(shape.enum)})")
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            out.append(f"{path} is {len(value)} characters, over {shape.metadata['max']}")
    elif shape.type_name in ("integer", "long", "double"):
        if "max" in shape.metadata and value > shape.metadata["max"]:
            out.append(f"{path}={value} over {shape.metadata['max']}")


def put_rule(i: dict) -> dict:
    p = {"Name": i["name"], "Description": i.get("description")}
    for key, api in (("scheduleExpression", "ScheduleExpression"), ("eventPattern", "EventPattern")):
        if i.get(key):
            p[api] = i[key]
    return {k: v for k, v in p.items() if v is not None}


def put_targets(i: dict) -> dict:
    target = {"Id": "t", "Arn": i["arn"]}
    if i.get("roleArn"):
        target["RoleArn"] = i["roleArn"]
    if i.get("retryPolicy"):
        target["RetryPolicy"] = {"MaximumEventAgeInSeconds": _int(i["retryPolicy"]["maximumEventAgeInSeconds"]),
                                 "MaximumRetryAttempts": _int(i["retryPolicy"]["maximumRetryAttempts"])}
    if i.get("deadLetterConfig"):
        target["DeadLetterConfig"] = {"Arn": i["deadLetterConfig"]["arn"]}
    if i.get("inputTransformer"):
        target["InputTransformer"] = {"InputPathsMap": i["inputTransformer"]["inputPaths"],
                                      "InputTemplate": i["inputTransformer"]["inputTemplate"]}
    return {"Rule": i["rule"], "Targets": [target]}


def errors(operation: str, params: dict, service: str = "cloudwatch") -> list[str]:
    shape = (_model() if service == "cloudwatch" else service_model(service)
             ).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    out = [report.generate_report()] if report.has_errors() else []
    _walk(shape, params, operation, out)
    return out
