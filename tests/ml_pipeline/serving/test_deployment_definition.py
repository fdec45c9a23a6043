"""The deployment workflow as the plan records it: statelint, every Task's parameters against botocore's
models (enums and ranges too), and the properties the issue asks of it."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ml_pipeline.serving.deployment_definition import DeploymentParams, definition
from tests.ml_pipeline.serving import botocore_check, fakes

STATELINT = Path(sys.executable).parent / "statelint"
# Task resource -> (botocore service, operation)
OPERATIONS = {
    "arn:aws:states:::sagemaker:createModel": ("sagemaker", "CreateModel"),
    "arn:aws:states:::sagemaker:createEndpointConfig": ("sagemaker", "CreateEndpointConfig"),
    "arn:aws:states:::sagemaker:createEndpoint": ("sagemaker", "CreateEndpoint"),
    "arn:aws:states:::sagemaker:updateEndpoint": ("sagemaker", "UpdateEndpoint"),
    "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint": ("sagemaker", "DescribeEndpoint"),
    "arn:aws:states:::dynamodb:getItem": ("dynamodb", "GetItem"),
    "arn:aws:states:::dynamodb:putItem": ("dynamodb", "PutItem"),
    "arn:aws:states:::dynamodb:updateItem": ("dynamodb", "UpdateItem"),
    "arn:aws:states:::lambda:invoke": ("lambda", "Invoke"),
}


@pytest.fixture(scope="module")
def planned(pipeline_plan) -> dict:
    return json.loads(pipeline_plan.one("aws:sfn/stateMachine:StateMachine", "serving-workflow").inputs["definition"])


def _lint(doc: dict, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "sm.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([str(STATELINT), str(path)], capture_output=True, text=True)


def test_statelint_accepts_the_definition_and_catches_a_dangling_next(planned, tmp_path):
    assert _lint(planned, tmp_path).returncode == 0, _lint(planned, tmp_path).stdout
    broken = json.loads(json.dumps(planned))
    broken["States"]["RegisterScaling"]["Next"] = "Nowhere"
    assert "Nowhere" in _lint(broken, tmp_path).stdout


def test_every_task_is_a_valid_request_of_its_api(planned):
    checked = set()
    for name, state in planned["States"].items():
        if state["Type"] != "Task":
            continue
        service, operation = OPERATIONS[state["Resource"]]
        params = dict(state["Parameters"])
        if operation == "Invoke":
            params["Payload"] = b"{}"  # the integration serializes Payload itself
        assert botocore_check.problems(service, operation, params) == [], name
        checked.add(operation)
    assert checked == {op for _, op in OPERATIONS.values()}


def test_the_checker_catches_an_enum_a_range_and_a_bad_instance_type(planned):
    update = json.loads(json.dumps(planned["States"]["UpdateEndpoint"]["Parameters"]))
    routing = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    routing["Type"], routing["WaitIntervalInSeconds"] = "CANNARY", 7200
    found = botocore_check.problems("sagemaker", "UpdateEndpoint", update)
    assert any("CANNARY" in p for p in found) and any("7200" in p for p in found)
    config = json.loads(json.dumps(planned["States"]["CreateEndpointConfig"]["Parameters"]))
    config["ProductionVariants"][0]["InstanceType"] = "ml.m5.largee"
    assert any("ml.m5.largee" in p for p in botocore_check.problems("sagemaker", "CreateEndpointConfig", config))


def test_updates_use_blue_green_canary_guardrails_with_the_stack_alarms_and_retain_counts(planned, pipeline_plan):
    update = planned["States"]["UpdateEndpoint"]["Parameters"]
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "CANARY", "WaitIntervalInSeconds": 600,
                                                     "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}
    assert policy["MaximumExecutionTimeoutInSeconds"] == 3600 and policy["TerminationWaitInSeconds"] == 300
    alarms = {r.inputs["name"] for r in pipeline_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if r.name.startswith("serving-")}
    assert {a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]} == alarms
    assert len(alarms) == 4
    assert update["RetainAllVariantProperties"] is True
    assert update["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DesiredWeight"}]


def test_models_and_configs_use_the_inference_image_capture_and_keys(planned, pipeline_plan):
    model = planned["States"]["CreateModel"]["Parameters"]
    assert model["PrimaryContainer"]["Image"] == \
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
    assert model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    config = planned["States"]["CreateEndpointConfig"]["Parameters"]
    data_key = pipeline_plan.outputs["data_kms_key_arn"]
    capture = config["DataCaptureConfig"]
    # SageMaker appends <endpoint>/<variant>/yyyy/mm/dd/hh/, which is where the drift monitor reads.
    # On the data key in the artifacts bucket: the access-log bucket is SSE-S3 and refuses aws:kms uploads.
    assert capture["DestinationS3Uri"] == f"s3://{pipeline_plan.outputs['artifacts_bucket_name']}/data-capture"
    assert capture["KmsKeyId"] == config["KmsKeyId"] == data_key
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["champion", "challenger"]
    assert {v["InstanceType"] for v in config["ProductionVariants"]} == {"ml.m5.large"}


def test_polling_is_bounded_and_success_needs_the_new_config(planned):
    states = planned["States"]
    success = states["EndpointState"]["Choices"][0]
    assert success["Next"] == "MarkDeployed"
    assert {"Variable": "$.endpoint.config", "StringEqualsPath": "$.names.config"} in success["And"]
    assert states["EndpointState"]["Choices"][1] == {"Variable": "$.endpoint.status", "StringEquals": "InService",
                                                     "Next": "RolledBackByGuardrails"}
    limit = states["EndpointState"]["Choices"][3]
    assert limit["NumericGreaterThanEquals"] * states["WaitForEndpoint"]["Seconds"] >= 3600 + 600 + 300
    assert planned["TimeoutSeconds"] > limit["NumericGreaterThanEquals"] * states["WaitForEndpoint"]["Seconds"]


def test_local_storage_instances_leave_the_volume_key_out():
    params = DeploymentParams(
        settings=fakes.settings({"endpointInstanceType": "ml.g5.xlarge"}), name_prefix="p", endpoint_name="e",
        versions_table="v", ab_table="a", image_uri="i", execution_role_arn="r", autoscaling_function_arn="f",
        capture_s3_uri="s3://b/", data_key_arn="k", volume_key_arn="k", rollback_alarm_names=("a",), region="us-east-1")
    assert "KmsKeyId" not in definition(params)["States"]["CreateEndpointConfig"]["Parameters"]
    m5 = replace(params, settings=fakes.settings())
    assert definition(m5)["States"]["CreateEndpointConfig"]["Parameters"]["KmsKeyId"] == "k"


@pytest.mark.parametrize("values, production, key", [
    ({"endpointInstanceCount": "1"}, True, "endpointInstanceCount"),
    ({"endpointMinInstances": "3", "endpointInstanceCount": "2"}, False, "endpointMinInstances"),
    ({"deployCanaryPercent": "60"}, False, "deployCanaryPercent"),
    ({"deployMaxSeconds": "300"}, False, "deployMaxSeconds"),
    ({"endpointInstanceType": "m5.large"}, False, "endpointInstanceType"),
    ({"challengerInitialWeight": "0.9"}, False, "challengerInitialWeight"),
])
def test_a_wrong_serving_setting_names_its_key(values, production, key):
    with pytest.raises(ValueError, match=f"ml-pipeline:{key}"):
        fakes.settings(values, production=production)


def test_production_defaults_to_two_instances_per_variant():
    assert fakes.settings(production=True).instance_count == 2 and fakes.settings().instance_count == 1


def test_models_run_in_the_given_subnets_and_both_go_together():
    base = dict(settings=fakes.settings(), name_prefix="p", endpoint_name="e", versions_table="v", ab_table="a",
                image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311",
                execution_role_arn="arn:aws:iam::123456789012:role/sagemaker", autoscaling_function_arn="f",
                capture_s3_uri="s3://b/",
                data_key_arn="k", volume_key_arn="k", rollback_alarm_names=("a",), region="us-east-1")
    params = DeploymentParams(**base, subnet_ids=("subnet-0a1b2c3d", "subnet-0e1f2a3b"),
                              security_group_ids=("sg-0a1b2c3d",))
    model = definition(params)["States"]["CreateModel"]["Parameters"]
    assert model["VpcConfig"] == {"Subnets": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"], "SecurityGroupIds": ["sg-0a1b2c3d"]}
    assert botocore_check.problems("sagemaker", "CreateModel", model) == []
    assert "VpcConfig" not in definition(DeploymentParams(**base))["States"]["CreateModel"]["Parameters"]
    with pytest.raises(ValueError, match="go together"):
        DeploymentParams(**base, subnet_ids=("subnet-1",))


@pytest.mark.parametrize("instance_type, local", [
    ("ml.m5.large", False), ("ml.c7i.xlarge", False), ("ml.inf1.xlarge", False), ("ml.c6in.large", False),
    ("ml.g5.xlarge", True), ("ml.g4dn.xlarge", True), ("ml.m5d.large", True),
    # NVMe families the named list once missed: a volume key there fails CreateEndpointConfig.
    ("ml.m6gd.large", True), ("ml.c6id.xlarge", True), ("ml.r6gd.large", True), ("ml.m5dn.large", True)])
def test_instance_families_with_local_nvme_get_no_volume_key(instance_type, local):
    assert fakes.settings({"endpointInstanceType": instance_type}).volume_kms is not local


def test_the_roles_that_deploy_may_read_exactly_the_rollback_alarms(pipeline_plan):
    # SageMaker's guardrails read the auto-rollback alarms with the execution role's permissions.
    alarm_arns = sorted(a.state["arn"] for a in pipeline_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                        if a.name.startswith("serving-") and a.name.endswith(("-errors", "-latency")))
    assert len(alarm_arns) == 4
    for policy in ("serving-sagemaker-policy", "serving-workflow-policy"):
        doc = json.loads(pipeline_plan.one("aws:iam/rolePolicy:RolePolicy", policy).inputs["policy"])
        [statement] = [s for s in doc["Statement"] if s.get("Sid") == "RollbackAlarms"]
        assert statement["Action"] == ["cloudwatch:DescribeAlarms"] and sorted(statement["Resource"]) == alarm_arns


def test_the_execution_role_may_write_captures_with_the_data_key(pipeline_plan):
    # Data capture: S3 objects under the capture prefix, encrypted with the config's KmsKeyId (the data key),
    # which takes kms:Encrypt and kms:GenerateDataKey from the execution role.
    doc = json.loads(pipeline_plan.one("aws:iam/rolePolicy:RolePolicy", "serving-sagemaker-policy").inputs["policy"])
    data_key = pipeline_plan.one("aws:kms/key:Key", "data-key-key").state["arn"]
    on_key = {a for s in doc["Statement"] if data_key in s["Resource"] for a in s["Action"]}
    assert {"kms:Encrypt", "kms:GenerateDataKey"} <= on_key
    [capture] = [s for s in doc["Statement"] if s.get("Sid") == "DataCapture"]
    assert capture["Action"] == ["s3:PutObject"] and capture["Resource"][0].endswith("/data-capture/*")
