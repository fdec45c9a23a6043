"""The deployment workflow executed by moto's Step Functions against moto's SageMaker, DynamoDB, Lambda
(the autoscaling function runs in-process) and Application Auto Scaling.

moto does not implement UpdateEndpoint (it raises NotImplementedError): that one call is answered by
``fakes.UpdateEndpointDouble``. Wait states return at once (the poll loop still iterates).

GIVEN a versions table and an empty A/B table, the sequence is: first deploy (CreateEndpoint), rollback with
nothing to roll back to, update (UpdateEndpoint with guardrails), promotion, a deploy rolled back by the
guardrails, a manual rollback, and a second rollback with nothing left.
"""
from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest
from moto import mock_aws

from ml_pipeline.serving.deployment_definition import DeploymentParams, definition
from tests.ml_pipeline.serving import fakes

ROLE = f"arn:aws:iam::{fakes.ACCOUNT}:role/sfn"


@pytest.fixture(scope="module")
def workflow():
    """One moto world for the whole sequence (the steps build on each other)."""
    mp = pytest.MonkeyPatch()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        settings = fakes.settings({"challengerInitialWeight": "0.1"})
        autoscaling = fakes.load_function("serving_autoscaling", {
            "LOG_LEVEL": "INFO", "VARIANTS": "champion,challenger", "MIN_CAPACITY": str(settings.autoscaling_min),
            "MAX_CAPACITY": str(settings.autoscaling_max), "TARGET_INVOCATIONS_PER_INSTANCE": "100",
            "SCALE_IN_COOLDOWN_SECONDS": "300", "SCALE_OUT_COOLDOWN_SECONDS": "60"}, mp)
        waits, invocations = [], []

        def invoke(self, function_name, qualifier, body, headers, response_headers):
            invocations.append(json.loads(body))
            return json.dumps(autoscaling.handler(json.loads(body), None)).encode()

        mp.setattr(LambdaSimpleBackend, "invoke", invoke)
        _reuse_task_clients(mp)
        mp.setattr(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: waits.append(wait_seconds))
        fakes.create_tables()
        for version in (1, 2, 3):
            fakes.put_version(version)
        fakes.put_version(4, status="rejected")
        params = DeploymentParams(
            settings=settings, name_prefix=fakes.PREFIX, endpoint_name=fakes.ENDPOINT,
            versions_table=fakes.VERSIONS_TABLE, ab_table=fakes.AB_TABLE,
            image_uri="763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311",
            execution_role_arn=f"arn:aws:iam::{fakes.ACCOUNT}:role/sagemaker",
            autoscaling_function_arn=f"arn:aws:lambda:us-east-1:{fakes.ACCOUNT}:function:autoscaling",
            capture_s3_uri="s3://logs/data-capture/", data_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
            volume_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
            rollback_alarm_names=("champion-5xx", "challenger-5xx"), region=fakes.REGION)
        sfn = boto3.client("stepfunctions", region_name=fakes.REGION)
        arn = sfn.create_state_machine(name="deploy", definition=json.dumps(definition(params)),
                                       roleArn=ROLE)["stateMachineArn"]
        double = fakes.UpdateEndpointDouble().install()
        manage = fakes.load_function("serving_manage", {
            "LOG_LEVEL": "INFO", "VERSIONS_TABLE": fakes.VERSIONS_TABLE, "AB_TABLE": fakes.AB_TABLE,
            "ENDPOINT_NAME": fakes.ENDPOINT, "MODEL_NAME": fakes.MODEL, "STATE_MACHINE_ARN": arn}, mp)
        world = type("World", (), {})()
        world.__dict__.update(sfn=sfn, arn=arn, double=double, waits=waits, invocations=invocations, manage=manage,
                              sagemaker=boto3.client("sagemaker", region_name=fakes.REGION), settings=settings,
                              scaling=boto3.client("application-autoscaling", region_name=fakes.REGION))
        try:
            yield world
        finally:
            double.uninstall()
            mp.undo()


def _reuse_task_clients(mp) -> None:
    """moto's Step Functions builds a new boto3 client for every task (about 50 ms each here); one client
    per service and region keeps the sequence inside the suite's time budget and changes no behaviour."""
    import importlib

    from moto.stepfunctions.parser.asl.utils import boto_client
    made = {}
    original = boto_client.boto_client_for

    def cached(region, service, state_credentials=None):
        if (region, service) not in made:
            made[region, service] = original(region=region, service=service, state_credentials=state_credentials)
        return made[region, service]

    base = "moto.stepfunctions.parser.asl.component.state.exec.state_task."
    for module in ("lambda_eval_utils", "service.state_task_service_unsupported",
                   "service.state_task_service_dynamodb", "service.state_task_service_aws_sdk"):
        mp.setattr(importlib.import_module(base + module), "boto_client_for", cached)


def run(world, payload: dict) -> dict:
    arn = world.sfn.start_execution(stateMachineArn=world.arn, name=uuid.uuid4().hex,
                                    input=json.dumps(payload))["executionArn"]
    for _ in range(400):
        result = world.sfn.describe_execution(executionArn=arn)
        if result["status"] != "RUNNING":
            return result
        time.sleep(0.05)
    raise AssertionError("execution did not finish")


def serving_config(world) -> str:
    return world.sagemaker.describe_endpoint(EndpointName=fakes.ENDPOINT)["EndpointConfigName"]


def test_1_first_deploy_creates_the_endpoint_records_production_and_registers_autoscaling(workflow):
    result = run(workflow, {"model_name": fakes.MODEL, "version": 1})
    assert result["status"] == "SUCCEEDED", result.get("cause")
    current = fakes.ab_items()["current"]
    config = workflow.sagemaker.describe_endpoint_config(EndpointConfigName=current["endpoint_config_name"])
    assert serving_config(workflow) == current["endpoint_config_name"]
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    assert set(variants) == {"champion", "challenger"}
    assert variants["champion"]["ModelName"] == variants["challenger"]["ModelName"] == current["production_model"]
    assert (current["champion_weight"], current["challenger_weight"]) == (1, 0)
    assert config["DataCaptureConfig"]["KmsKeyId"].endswith("key/k") and config["KmsKeyId"].endswith("key/k")
    model = workflow.sagemaker.describe_model(ModelName=current["production_model"])
    # (moto drops EnableNetworkIsolation; the request itself is checked against botocore's model elsewhere)
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith("/1/model.tar.gz")
    assert fakes.version_status(1) == "production" and current["production_version"] == 1
    assert current["previous_production_version"] is None
    targets = workflow.scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert sorted(t["ResourceId"] for t in targets) == [f"endpoint/{fakes.ENDPOINT}/variant/challenger",
                                                        f"endpoint/{fakes.ENDPOINT}/variant/champion"]
    assert workflow.double.requests == [], "the first deployment creates the endpoint"


def test_2_rollback_with_nothing_to_roll_back_to_fails_clearly_and_changes_nothing(workflow):
    before = fakes.ab_items(), fakes.version_status(1), serving_config(workflow)
    result = run(workflow, {"model_name": fakes.MODEL, "action": "rollback"})
    assert result["status"] == "FAILED" and result["error"] == "NothingToRollBack"
    assert "nothing was changed" in result["cause"]
    assert (fakes.ab_items(), fakes.version_status(1), serving_config(workflow)) == before


def test_3_a_rejected_version_or_another_model_is_refused(workflow):
    assert run(workflow, {"model_name": fakes.MODEL, "version": 4})["error"] == "VersionNotDeployable"
    assert run(workflow, {"model_name": fakes.MODEL, "version": 99})["error"] == "VersionNotFound"
    assert run(workflow, {"model_name": "other", "version": 1})["error"] == "UnknownModel"


def test_4_update_puts_the_new_version_on_challenger_with_guardrails_and_retained_counts(workflow):
    first = fakes.ab_items()["current"]
    polls_before = len(workflow.waits)
    result = run(workflow, {"model_name": fakes.MODEL, "version": 2})
    assert result["status"] == "SUCCEEDED", [i.get("error") for i in fakes.ab_items().values()]
    request = workflow.double.requests[-1]
    assert request["RetainAllVariantProperties"] is True
    assert request["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DesiredWeight"}]
    routing = request["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY" and routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 10}
    assert request["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "champion-5xx"}, {"AlarmName": "challenger-5xx"}]
    assert len(workflow.waits) - polls_before == 2, "one poll saw Updating, the next InService on the new config"
    current = fakes.ab_items()["current"]
    assert serving_config(workflow) == current["endpoint_config_name"] == request["EndpointConfigName"]
    assert current["previous_endpoint_config_name"] == first["endpoint_config_name"]
    assert (current["champion_version"], current["challenger_version"], current["production_version"]) == (1, 2, 1)
    assert float(current["champion_weight"]) == 0.9 and float(current["challenger_weight"]) == 0.1
    assert current["champion_model"] == first["production_model"]
    assert fakes.version_status(2) == "approved"
    assert [i["action"] for i in workflow.invocations[-2:]] == ["prepare", "register"]


def test_5_weights_and_promotion_go_through_update_endpoint_weights_with_history(workflow):
    started = workflow.manage.start_ab_test({"challenger_weight": 0.3, "metric": "accuracy"})
    variants = {v["VariantName"]: v for v in
                workflow.sagemaker.describe_endpoint(EndpointName=fakes.ENDPOINT)["ProductionVariants"]}
    assert variants["challenger"]["DesiredWeight"] == 0.3 and variants["champion"]["DesiredWeight"] == 0.7
    promoted = workflow.manage.promote({"outcome": "challenger wins on accuracy"})
    assert promoted["production_version"] == 2 and promoted["retired_version"] == 1
    items = fakes.ab_items()
    assert items[f"test#{started['test_id']}"]["outcome"] == "challenger wins on accuracy"
    assert (items["current"]["production_version"], items["current"]["previous_production_version"]) == (2, 1)
    assert [i["event"] for k, i in sorted(items.items()) if k.startswith("history#")][-2:] == ["ab-test-started", "promoted"]
    assert (fakes.version_status(2), fakes.version_status(1)) == ("production", "retired")


def test_6_a_deployment_the_guardrails_roll_back_is_recorded_as_rolled_back(workflow):
    before = fakes.ab_items()["current"]
    workflow.double.outcome = "rollback"
    try:
        result = run(workflow, {"model_name": fakes.MODEL, "version": 3})
    finally:
        workflow.double.outcome = "complete"
    assert result["status"] == "FAILED" and result["error"] == "DeploymentRolledBack"
    assert fakes.version_status(3) == "rolled-back"
    assert serving_config(workflow) == before["endpoint_config_name"] != workflow.double.requests[-1]["EndpointConfigName"]
    items = fakes.ab_items()
    assert items["current"] == before, "the table still says what the endpoint serves"
    last = [i for k, i in sorted(items.items()) if k.startswith("history#")][-1]
    assert (last["event"], last["version"]) == ("rolled-back-by-guardrails", 3)


def test_7_manual_rollback_redeploys_the_previous_production_version(workflow):
    result = run(workflow, {"model_name": fakes.MODEL, "action": "rollback"})
    assert result["status"] == "SUCCEEDED", result.get("cause")
    current = fakes.ab_items()["current"]
    assert (current["production_version"], current["champion_version"], current["challenger_version"]) == (1, 1, 1)
    assert (fakes.version_status(1), fakes.version_status(2)) == ("production", "rolled-back")
    assert serving_config(workflow) == current["endpoint_config_name"]
    assert current["previous_production_version"] is None


def test_8_a_second_rollback_has_nothing_left_and_changes_nothing(workflow):
    before = fakes.ab_items(), serving_config(workflow)
    result = workflow.manage.handler({"httpMethod": "POST", "resource": "/rollback", "body": "{}"}, None)
    assert result["statusCode"] == 202
    execution = json.loads(result["body"])["execution_arn"]
    for _ in range(400):
        described = workflow.sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert described["status"] == "FAILED" and described["error"] == "NothingToRollBack"
    assert (fakes.ab_items(), serving_config(workflow)) == before
