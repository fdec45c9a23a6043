"""The inference API: the OpenAPI document (validated, with its API Gateway blocks asserted, since no tool
checks those), the stage, usage plan and stream settings under mocks, and the handlers behind a local
proxy-event adapter backed by moto, under schemathesis."""
from __future__ import annotations

import base64
import hashlib
import json

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from moto import mock_aws
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from ml_pipeline.serving import openapi
from tests.ml_pipeline.serving import fakes
from tests.ml_pipeline.serving.apigw_adapter import ApiGatewayAdapter

PREDICT_ENV = {"LOG_LEVEL": "INFO", "ENDPOINT_NAME": fakes.ENDPOINT, "AB_TABLE": fakes.AB_TABLE,
               "RESULTS_TABLE": "predictions", "STREAM_NAME": "requests", "MAX_REQUEST_BYTES": "60000",
               "CACHE_SECONDS": "10", "RESULT_TTL_SECONDS": "3600"}


def _inputs(plan, token, name):
    return plan.one(token, name).inputs


@pytest.fixture(scope="module")
def document(pipeline_plan) -> dict:
    return json.loads(_inputs(pipeline_plan, "aws:apigateway/restApi:RestApi", "inference-api")["body"])


def test_the_document_is_valid_openapi_and_the_validator_catches_a_broken_one(document):
    validate(document)
    broken = json.loads(json.dumps(document))
    broken["paths"]["/predictions/{id}"]["get"]["parameters"] = []
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_route_is_iam_authorized_validated_and_proxied_to_its_function(document, pipeline_plan):
    functions = {r.name: r.state["invokeArn"] for r in pipeline_plan.of_type("aws:lambda/function:Function")}
    operations = {(m.upper(), p): op for p, ms in document["paths"].items() for m, op in ms.items()}
    assert set(operations) == set(openapi.PREDICTION) | set(openapi.MANAGEMENT)
    for key, op in operations.items():
        assert all("sigv4" in requirement for requirement in op["security"]), key
        assert op["x-amazon-apigateway-request-validator"] in document["x-amazon-apigateway-request-validators"]
        integration = op["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST"
        expected = "inference-predict" if key in openapi.PREDICTION else "inference-manage"
        assert integration["uri"] == functions[expected], key
        if "requestBody" in op:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
            assert ref in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert document["x-amazon-apigateway-request-validators"]["body"]["validateRequestBody"] is True


def test_management_routes_are_denied_to_everyone_but_the_operator_role(document, pipeline_plan):
    statements = {s["Sid"]: s for s in document["x-amazon-apigateway-policy"]["Statement"]}
    deny = statements["ManagementOperatorOnly"]
    operator = pipeline_plan.outputs["serving_operator_role_arn"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": operator}}
    assert sorted(deny["Resource"]) == sorted(f"execute-api:/*/{m}{p.split('{')[0]}*" for m, p in openapi.MANAGEMENT)
    assert statements["AccountCallers"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    policy = json.loads(_inputs(pipeline_plan, "aws:iam/rolePolicy:RolePolicy", "inference-operator-policy")["policy"])
    resources = policy["Statement"][0]["Resource"]
    assert policy["Statement"][0]["Action"] == ["execute-api:Invoke"] and len(resources) == len(openapi.MANAGEMENT)
    assert all("/dev/" in r and "/predict" not in r for r in resources)


def test_the_stage_traces_logs_json_throttles_and_redeploys_when_the_document_changes(pipeline_plan, document):
    stage = _inputs(pipeline_plan, "aws:apigateway/stage:Stage", "inference-stage")
    logs = pipeline_plan.one("aws:cloudwatch/logGroup:LogGroup", "inference-access-logs")
    assert stage["stageName"] == "dev" and stage["xrayTracingEnabled"] is True
    assert stage["accessLogSettings"]["destinationArn"] == logs.state["arn"]
    assert logs.inputs["kmsKeyId"] == pipeline_plan.outputs["metadata_kms_key_arn"]
    assert set(json.loads(stage["accessLogSettings"]["format"])) >= {"requestId", "status", "user", "latency"}
    body = _inputs(pipeline_plan, "aws:apigateway/restApi:RestApi", "inference-api")["body"]
    triggers = _inputs(pipeline_plan, "aws:apigateway/deployment:Deployment", "inference-deployment")["triggers"]
    assert triggers == {"document": hashlib.sha256(json.dumps(json.loads(body), sort_keys=True).encode()).hexdigest()}
    plan = _inputs(pipeline_plan, "aws:apigateway/usagePlan:UsagePlan", "inference-usage-plan")
    assert plan["throttleSettings"] == {"rateLimit": 100.0, "burstLimit": 200.0}
    assert plan["quotaSettings"] == {"limit": 1000000.0, "period": "DAY"}
    method = _inputs(pipeline_plan, "aws:apigateway/methodSettings:MethodSettings", "inference-method-settings")
    assert method["settings"]["throttlingRateLimit"] == 200.0 and method["settings"]["metricsEnabled"] is True
    assert not pipeline_plan.of_type("aws:apigateway/account:Account"), "the account's CloudWatch role stays outside"


def test_the_async_path_is_an_encrypted_on_demand_stream_with_bounded_retries(pipeline_plan):
    stream = _inputs(pipeline_plan, "aws:kinesis/stream:Stream", "inference-stream")
    assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"} and stream["encryptionType"] == "KMS"
    assert stream["kmsKeyId"] == pipeline_plan.outputs["data_kms_key_arn"]
    mapping = _inputs(pipeline_plan, "aws:lambda/eventSourceMapping:EventSourceMapping", "inference-consumer-mapping")
    queue = pipeline_plan.one("aws:sqs/queue:Queue", "inference-failures")
    assert mapping["bisectBatchOnFunctionError"] is True and mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (mapping["maximumRetryAttempts"], mapping["maximumRecordAgeInSeconds"], mapping["batchSize"]) == (3.0, 3600.0, 100.0)
    assert mapping["destinationConfig"]["onFailure"]["destinationArn"] == queue.state["arn"]
    table = _inputs(pipeline_plan, "aws:dynamodb/table:Table", "inference-results")
    assert table["ttl"] == {"attributeName": "expires_at", "enabled": True}


# -- the handlers behind the adapter, backed by moto ----------------------------------------------------

def fake_model(self, endpoint_name, unique_repr):
    """The endpoint's container (contract 5): one prediction per instance; 'aW52YWxpZA==' ("invalid") is
    refused like an undecodable image."""
    request = json.loads(base64.b64decode(unique_repr))
    instances = json.loads(request["Body"])["instances"]
    headers = {k.lower(): v for k, v in request.items()}
    variant = headers.get("x-amzn-sagemaker-target-variant") or "champion"
    body = {"predictions": [{"label": "cat", "probability": 0.9, "top": [["cat", 0.9], ["dog", 0.1]]}
                            for _ in instances]}
    return json.dumps(body), "application/json", variant, None


@pytest.fixture(scope="module")
def api(document):
    mp = pytest.MonkeyPatch()
    with mock_aws():
        from moto.sagemakerruntime.models import SageMakerRuntimeBackend
        mp.setattr(SageMakerRuntimeBackend, "invoke_endpoint", fake_model)
        fakes.create_tables()
        ddb = boto3.client("dynamodb", region_name=fakes.REGION)
        ddb.create_table(TableName="predictions", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}])
        boto3.client("kinesis", region_name=fakes.REGION).create_stream(
            StreamName="requests", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        sm = boto3.client("sagemaker", region_name=fakes.REGION)
        for version in (1, 2):
            fakes.put_version(version, "production" if version == 1 else "approved")
            sm.create_model(ModelName=f"m{version}", ExecutionRoleArn=f"arn:aws:iam::{fakes.ACCOUNT}:role/r",
                            PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"})
        sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
            {"VariantName": v, "ModelName": m, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
             "InitialVariantWeight": w} for v, m, w in (("champion", "m1", 0.9), ("challenger", "m2", 0.1))])
        sm.create_endpoint(EndpointName=fakes.ENDPOINT, EndpointConfigName="c")
        boto3.resource("dynamodb", region_name=fakes.REGION).Table(fakes.AB_TABLE).put_item(Item={
            "endpoint_name": fakes.ENDPOINT, "record": "current", "endpoint_config_name": "c",
            "champion_version": 1, "champion_model": "m1", "champion_weight": 1, "challenger_version": 2,
            "challenger_model": "m2", "challenger_weight": 0, "production_version": 1, "production_model": "m1",
            "previous_production_version": None})
        machine = boto3.client("stepfunctions", region_name=fakes.REGION).create_state_machine(
            name="deploy", roleArn=f"arn:aws:iam::{fakes.ACCOUNT}:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
        predict = fakes.load_function("serving_predict", PREDICT_ENV, mp)
        manage = fakes.load_function("serving_manage", {
            "LOG_LEVEL": "INFO", "VERSIONS_TABLE": fakes.VERSIONS_TABLE, "AB_TABLE": fakes.AB_TABLE,
            "ENDPOINT_NAME": fakes.ENDPOINT, "MODEL_NAME": fakes.MODEL, "STATE_MACHINE_ARN": machine}, mp)
        consumer = fakes.load_function("serving_consumer", {
            "LOG_LEVEL": "INFO", "ENDPOINT_NAME": fakes.ENDPOINT, "RESULTS_TABLE": "predictions",
            "RESULT_TTL_SECONDS": "3600", "MAX_INSTANCES_PER_CALL": "32"}, mp)
        integrations = {op["x-amazon-apigateway-integration"]["uri"] for ms in document["paths"].values()
                        for op in ms.values()}
        predict_uri = document["paths"]["/predict"]["post"]["x-amazon-apigateway-integration"]["uri"]
        handlers = {uri: predict.handler if uri == predict_uri else manage.handler for uri in integrations}
        adapter = ApiGatewayAdapter(document, handlers, caller_arn=f"arn:aws:sts::{fakes.ACCOUNT}:assumed-role/op/s")
        world = type("Api", (), {})()
        world.__dict__.update(adapter=adapter, predict=predict, manage=manage, consumer=consumer)
        try:
            yield world
        finally:
            mp.undo()


def call(api, method: str, path: str, body=None) -> tuple[int, dict]:
    found = api.adapter.event(method, path, body if body is None or isinstance(body, str) else json.dumps(body), {}, {})
    event, handler = found
    result = handler(event, None)
    return result["statusCode"], json.loads(result["body"])


IMAGE = base64.b64encode(b"\xff\xd8\xff\xe0 a jpeg").decode()


def test_predict_returns_predictions_with_the_variant_and_its_version(api):
    status, body = call(api, "POST", "/predict", {"instances": [IMAGE, IMAGE]})
    assert status == 200 and len(body["predictions"]) == 2
    assert (body["variant"], body["model_version"]) == ("champion", 1)
    status, body = call(api, "POST", "/predict", {"instances": [IMAGE], "variant": "challenger"})
    assert (status, body["variant"], body["model_version"]) == (200, "challenger", 2)


@pytest.mark.parametrize("body, status, reason", [
    ("not json", 400, "not JSON"),
    ([1, 2], 400, "JSON object"),
    ({"instances": []}, 400, "1 to 64"),
    ({"instances": ["%%%"]}, 400, "not valid base64"),
    ({"instances": [IMAGE], "variant": "blue"}, 400, "variant must be"),
    ({"instances": [IMAGE], "extra": 1}, 400, "unknown fields"),
    ({"instances": ["A" * 70000]}, 413, "at most 60000"),
])
def test_malformed_or_oversized_requests_get_a_4xx_with_the_reason(api, body, status, reason):
    got, answer = call(api, "POST", "/predict", body)
    assert got == status and reason in answer["message"]


def test_async_requests_queue_then_the_consumer_writes_results(api):
    status, accepted = call(api, "POST", "/predict/async", {"instances": [IMAGE]})
    assert status == 202
    request_id = accepted["request_id"]
    assert call(api, "GET", f"/predictions/{request_id}") == (200, {"request_id": request_id, "status": "queued"})
    kinesis = boto3.client("kinesis", region_name=fakes.REGION)
    records = []
    for shard in kinesis.list_shards(StreamName="requests")["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName="requests", ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records += kinesis.get_records(ShardIterator=iterator)["Records"]
    assert len(records) == 1
    event = {"Records": [{"kinesis": {"sequenceNumber": r["SequenceNumber"],
                                      "data": base64.b64encode(r["Data"]).decode()}} for r in records]}
    assert api.consumer.handler(event, None) == {"batchItemFailures": []}
    status, result = call(api, "GET", f"/predictions/{request_id}")
    assert status == 200 and result["status"] == "done" and result["predictions"][0]["label"] == "cat"
    assert call(api, "GET", "/predictions/" + "0" * 32)[0] == 404
    assert call(api, "GET", "/predictions/nothex")[0] == 400


def test_management_routes_list_versions_set_weights_and_start_a_rollback(api):
    status, body = call(api, "GET", f"/models/{fakes.MODEL}/versions")
    assert status == 200 and [v["version"] for v in body["versions"]] == [2, 1]
    status, body = call(api, "PUT", "/ab-tests/current/weights", {"champion": 0.5, "challenger": 0.5})
    assert status == 200 and body["challenger_weight"] == 0.5
    assert call(api, "PUT", "/ab-tests/current/weights", {"champion": 2, "challenger": 0})[0] == 400
    status, body = call(api, "POST", "/rollback", {"version": 1})
    assert status == 202 and body["input"] == {"model_name": fakes.MODEL, "action": "rollback", "version": 1}
    assert call(api, "GET", "/models/other/versions")[0] == 404


def test_the_handlers_survive_schemathesis_with_no_5xx_and_no_schema_violations(api):
    import schemathesis
    from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                     status_code_conformance)

    schema = schemathesis.openapi.from_wsgi("/openapi.json", api.adapter)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(openapi.PREDICTION) + len(openapi.MANAGEMENT)
    calls = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call()
            case.validate_response(response, checks=checks)
            calls.append(response.status_code)

        run()
    assert len(calls) >= 40 and all(code < 500 for code in calls)
