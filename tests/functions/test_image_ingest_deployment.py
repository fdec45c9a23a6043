"""The ingest function as the ml-pipeline stack deploys it: one list of environment variable names, each
required by the function; settings with one home; the runtime's JSON logging; least-privilege grants
(ListBucket on the upload prefix, statistics items only, keys only through their services); alarms on
the function's own metrics; and the memory check at config load."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from offline import runner
from shared.config_reader import ConfigError
from shared.lambda_function import function_module

ENV = function_module("image_ingest", "environment")
FN = "aws:lambda/function:Function"


def _statements(plan: Any) -> dict[str, dict[str, Any]]:
    policy = json.loads(plan.one("aws:iam/rolePolicy:RolePolicy", "ingest-fn-policy").inputs["policy"])
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_stack_sets_exactly_the_variables_the_function_names(pipeline_plan):
    env = pipeline_plan.one(FN, "ingest-fn").inputs["environment"]["variables"]
    assert set(env) == set(ENV.ALL)
    assert env[ENV.METRIC_NAMESPACE] == "MLPlatform/ml-pipeline-dev"
    assert (env[ENV.RAW_PREFIX], env[ENV.LABEL_PATH_SEGMENT], env[ENV.MAX_PIXELS_PER_BYTE]) == ("incoming/", "0", "1000")


@pytest.mark.parametrize("name", ENV.ALL + (ENV.LAMBDA_MEMORY_MB,))
def test_every_variable_is_required_by_the_function(load, monkeypatch, name):
    # No defaults in the function: without any one variable the cold start fails, naming it.
    monkeypatch.delenv(name)
    with pytest.raises(KeyError, match=name):
        load()


def test_the_functions_settings_have_no_defaults_of_their_own(load):
    handler = load()
    for cls in (handler.Settings, handler.imaging.Limits):
        defaults = [f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING]
        assert defaults == [], f"{cls.__name__} has defaults {defaults}: the stack's config is their one home"


def test_the_function_logs_as_json_through_the_runtime_into_its_own_group(pipeline_plan):
    function = pipeline_plan.one(FN, "ingest-fn").inputs
    group = pipeline_plan.one("aws:cloudwatch/logGroup:LogGroup", "ingest-fn-logs").inputs
    assert function["loggingConfig"] == {
        "logFormat": "JSON",
        "applicationLogLevel": "INFO",
        "systemLogLevel": "WARN",
        "logGroup": group["name"],
    }
    assert group["name"] == f"/aws/lambda/{function['name']}"
    assert "LOG_LEVEL" not in function["environment"]["variables"]


def test_the_role_may_list_only_the_upload_prefix_and_update_only_statistics_items(pipeline_plan):
    s = _statements(pipeline_plan)
    raw = pipeline_plan.outputs["raw_bucket_name"]
    assert s["ListRawPrefix"]["Action"] == ["s3:ListBucket"]
    assert s["ListRawPrefix"]["Resource"] == [f"arn:aws:s3:::{raw}"]
    assert s["ListRawPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["incoming/*"]}}
    assert s["DailyStatistics"]["Action"] == ["dynamodb:UpdateItem"]
    assert s["DailyStatistics"]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["stats#*"]}}
    assert "dynamodb:UpdateItem" not in s["Catalog"]["Action"]
    assert s["Metrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MLPlatform/ml-pipeline-dev"}}


def test_keys_are_usable_only_through_the_services_that_hold_data_under_them(pipeline_plan):
    s = _statements(pipeline_plan)
    assert s["DataKey"]["Condition"] == {
        "StringEquals": {"kms:ViaService": ["s3.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"]}
    }
    assert s["MetadataKey"]["Condition"] == {"StringEquals": {"kms:ViaService": ["dynamodb.us-east-1.amazonaws.com"]}}
    kms = [sid for sid, st in s.items() if any(a.startswith("kms:") for a in st["Action"])]
    assert sorted(kms) == ["DataKey", "MetadataKey"]


def test_the_functions_own_metrics_are_alarmed(pipeline_plan):
    metrics = function_module("image_ingest", "metric_names")
    alarms = {a.inputs["metricName"]: a.inputs for a in pipeline_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if "metricName" in a.inputs}  # metric-math alarms name their metrics in queries
    for name in (metrics.ACCESS_DENIED, metrics.PERMANENT_ERRORS, metrics.STATISTICS_NOT_RECORDED):
        assert alarms[name]["namespace"] == "MLPlatform/ml-pipeline-dev"
        assert alarms[name]["threshold"] == 0 and alarms[name]["alarmActions"] == [pipeline_plan.outputs["alarm_topic_arn"]]
    assert metrics.SOURCE_MISSING not in alarms  # a deleted upload is a warning, not a page


def test_too_little_memory_for_the_largest_allowed_image_fails_at_config_load(projects):
    with pytest.raises(ConfigError) as error:
        runner.run(projects["ml-pipeline"], "dev", config_overrides={"ml-pipeline:ingestMemoryMb": "512"})
    assert "ml-pipeline:ingestMemoryMb" in str(error.value) and "ml-pipeline:maxImageMegapixels" in str(error.value)
