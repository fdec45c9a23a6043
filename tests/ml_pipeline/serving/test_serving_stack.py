"""The serving resources in the ml-pipeline plan: each function gets exactly the variables it requires,
the state machine's role reaches what its tasks call, the endpoint itself is left to the workflow."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.lambda_function import function_source
from tests.botocore_models import service_model

FUNCTIONS = {"serving-autoscaling": "serving_autoscaling", "inference-predict": "serving_predict",
             "inference-consumer": "serving_consumer", "inference-manage": "serving_manage"}


@pytest.mark.parametrize("resource, folder", sorted(FUNCTIONS.items()))
def test_each_function_requires_exactly_the_variables_the_stack_sets(pipeline_plan, resource, folder):
    env = pipeline_plan.one("aws:lambda/function:Function", resource).inputs["environment"]["variables"]
    source = (function_source(folder) / "handler.py").read_text()
    required = re.findall(r'os\.environ\["([A-Z_]+)"\]', source)
    assert sorted(required) == sorted(env), "every variable set is required, and named once"


def test_pulumi_leaves_the_endpoint_its_configs_and_scalable_targets_to_the_workflow(pipeline_plan):
    owned = {r.type for r in pipeline_plan.resources}
    assert not owned & {"aws:sagemaker/endpoint:Endpoint", "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
                        "aws:sagemaker/model:Model", "aws:appautoscaling/target:Target",
                        "aws:appautoscaling/policy:Policy"}
    assert pipeline_plan.outputs["endpoint_name"] == "ml-pipeline-dev-image-classifier"


def test_the_workflow_role_can_do_what_its_tasks_call_and_pass_only_the_execution_role(pipeline_plan):
    policy = json.loads(pipeline_plan.one("aws:iam/rolePolicy:RolePolicy", "serving-workflow-policy").inputs["policy"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
            "sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint", "dynamodb:GetItem", "dynamodb:PutItem",
            "dynamodb:UpdateItem", "lambda:InvokeFunction"} <= actions
    passing = [s for s in policy["Statement"] if s["Action"] == ["iam:PassRole"]][0]
    role = pipeline_plan.one("aws:iam/role:Role", "serving-sagemaker-role")
    assert passing["Resource"] == [role.state["arn"]]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_rollback_alarms_watch_each_variant_and_notify_the_topic(pipeline_plan):
    for variant in ("champion", "challenger"):
        errors = pipeline_plan.one("aws:cloudwatch/metricAlarm:MetricAlarm", f"serving-{variant}-errors").inputs
        metrics = {q["id"]: q for q in errors["metricQueries"]}
        assert metrics["errors"]["metric"]["dimensions"] == {"EndpointName": "ml-pipeline-dev-image-classifier",
                                                             "VariantName": variant}
        assert errors["alarmActions"] == [pipeline_plan.outputs["alarm_topic_arn"]]


# (resource type, name, recorded input path, botocore service, shape): values mocks accept and AWS may not.
API_VALUES = [
    ("aws:kinesis/stream:Stream", "inference-stream", "streamModeDetails.streamMode", "kinesis", "StreamMode"),
    ("aws:kinesis/stream:Stream", "inference-stream", "encryptionType", "kinesis", "EncryptionType"),
    ("aws:kinesis/stream:Stream", "inference-stream", "retentionPeriod", "kinesis", "RetentionPeriodHours"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "inference-consumer-mapping", "maximumRetryAttempts",
     "lambda", "MaximumRetryAttemptsEventSourceMapping"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "inference-consumer-mapping", "maximumRecordAgeInSeconds",
     "lambda", "MaximumRecordAgeInSeconds"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "inference-consumer-mapping", "batchSize", "lambda", "BatchSize"),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "inference-consumer-mapping", "startingPosition",
     "lambda", "EventSourcePosition"),
    ("aws:apigateway/usagePlan:UsagePlan", "inference-usage-plan", "quotaSettings.period", "apigateway", "QuotaPeriodType"),
    ("aws:apigateway/restApi:RestApi", "inference-api", "apiKeySource", "apigateway", "ApiKeySourceType"),
    ("aws:apigateway/restApi:RestApi", "inference-api", "endpointConfiguration.types", "apigateway", "EndpointType"),
    ("aws:sfn/stateMachine:StateMachine", "serving-workflow", "type", "stepfunctions", "StateMachineType"),
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "serving-champion-errors", "treatMissingData", None, None),
]


@pytest.mark.parametrize("token, name, path, service, shape_name", API_VALUES)
def test_serving_settings_are_values_the_api_accepts(pipeline_plan, token, name, path, service, shape_name):
    value = pipeline_plan.one(token, name).inputs
    for part in path.split("."):
        value = value[part]
    if service is None:  # CloudWatch takes treatMissingData as free text: the four documented words
        assert value in ("breaching", "notBreaching", "ignore", "missing")
        return
    shape = service_model(service).shape_for(shape_name)
    if getattr(shape, "enum", None):
        assert value in shape.enum
    else:
        low, high = shape.metadata.get("min", float("-inf")), shape.metadata.get("max", float("inf"))
        assert low <= value <= high, (value, low, high)


def test_the_deployment_workflow_logs_to_its_encrypted_group_and_traces(pipeline_plan):
    machine = pipeline_plan.one("aws:sfn/stateMachine:StateMachine", "serving-workflow").inputs
    assert machine["tracingConfiguration"] == {"enabled": True}
    logging = machine["loggingConfiguration"]
    assert logging["level"] == "ALL" and logging["includeExecutionData"] is True
    group = pipeline_plan.one("aws:cloudwatch/logGroup:LogGroup", "serving-workflow-logs").inputs
    # The metadata key lets CloudWatch Logs use it under /aws/vendedlogs/states/<prefix>-* only.
    assert group["name"] == "/aws/vendedlogs/states/ml-pipeline-dev-deploy-model"
    assert group["kmsKeyId"] == pipeline_plan.outputs["metadata_kms_key_arn"]
    assert logging["logDestination"] == f"arn:aws:logs:us-east-1:123456789012:log-group:{group['name']}:*"
    policy = json.loads(pipeline_plan.one("aws:iam/rolePolicy:RolePolicy", "serving-workflow-policy").inputs["policy"])
    unscoped = {a for s in policy["Statement"] if s["Resource"] == "*" for a in s["Action"]}
    assert {"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
            "xray:GetSamplingRules", "xray:GetSamplingTargets"} == unscoped


def test_the_consumer_may_send_to_its_encrypted_on_failure_queue(pipeline_plan):
    # Lambda sends what the mapping gives up on with the function's role: SQS encrypts it with the queue's
    # key, which takes kms:GenerateDataKey (and Decrypt) from the sender.
    queue = pipeline_plan.one("aws:sqs/queue:Queue", "inference-failures")
    mapping = pipeline_plan.one("aws:lambda/eventSourceMapping:EventSourceMapping", "inference-consumer-mapping").inputs
    assert mapping["destinationConfig"]["onFailure"]["destinationArn"] == queue.state["arn"]
    policy = json.loads(pipeline_plan.one("aws:iam/rolePolicy:RolePolicy", "inference-consumer-policy").inputs["policy"])

    def granted(action, resource):
        return any(action in s["Action"] and resource in s["Resource"] for s in policy["Statement"])

    assert granted("sqs:SendMessage", queue.state["arn"])
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert granted(action, queue.inputs["kmsMasterKeyId"]), action


def test_the_management_function_gets_no_versions_read_it_never_makes(pipeline_plan):
    # The least-privilege check matches actions, not resources: GetItem (used on the A/B table) once also
    # stood on the versions table, which the function only queries and updates.
    policy = json.loads(pipeline_plan.one("aws:iam/rolePolicy:RolePolicy", "inference-manage-policy").inputs["policy"])
    versions = f"arn:aws:dynamodb:us-east-1:123456789012:table/{pipeline_plan.outputs['model_versions_table_name']}"
    on_versions = {a for s in policy["Statement"] if versions in s["Resource"] for a in s["Action"]}
    assert on_versions == {"dynamodb:Query", "dynamodb:UpdateItem"}


def test_no_log_group_outside_the_stack_is_left_for_api_gateway_to_create(pipeline_plan):
    # Execution logging would make API Gateway create API-Gateway-Execution-Logs_<id>/<stage> itself, with
    # no key and no retention; the access log (an encrypted group of this stack) carries the errors instead.
    settings = pipeline_plan.one("aws:apigateway/methodSettings:MethodSettings", "inference-method-settings")
    assert settings.inputs["settings"]["loggingLevel"] == "OFF"
    stage = pipeline_plan.one("aws:apigateway/stage:Stage", "inference-stage").inputs
    fields = json.loads(stage["accessLogSettings"]["format"])
    assert fields["error"] == "$context.error.message" and fields["integrationError"] == "$context.integration.error"


def test_the_consumer_sends_the_configured_instances_per_call_within_the_containers_limit(pipeline_plan):
    from ml_pipeline.serving import settings
    from shared.config_reader import ConfigError
    from tests.ml_pipeline.serving import fakes

    inference = Path(__file__).resolve().parents[3] / "model" / "inference.py"  # read, not imported (torch)
    container = int(re.search(r"^MAX_INSTANCES = (\d+)$", inference.read_text(), re.M).group(1))
    assert settings.CONTAINER_MAX_INSTANCES == container, "asyncInvokeBatchSize's limit is the container's"
    env = pipeline_plan.one("aws:lambda/function:Function", "inference-consumer").inputs["environment"]["variables"]
    assert env["MAX_INSTANCES_PER_CALL"] == str(container) == str(fakes.settings().invoke_batch_size)
    assert fakes.settings({"asyncInvokeBatchSize": 16}).invoke_batch_size == 16
    with pytest.raises(ConfigError, match="asyncInvokeBatchSize"):
        fakes.settings({"asyncInvokeBatchSize": container + 1})


def test_the_consumer_is_updated_before_the_function_that_writes_its_records(pipeline_plan):
    # A consumer of the old (JSON array) layout marks a record of the aligned layout failed for good; the
    # new consumer reads both. So the prediction function (the writer) waits for the consumer's function: the
    # SDK expands depends_on on the consumer component to its Lambda function and registers the predict
    # component only after it; the predict component's children (its function) register after their parent.
    consumer = pipeline_plan.one("aws:lambda/function:Function", "inference-consumer")
    predict = [r for u, r in pipeline_plan.registrations.items()
               if u.endswith("$mlplatform:compute:PythonFunction::inference-predict")]
    assert len(predict) == 1 and consumer.urn in predict[0]["dependencies"]
