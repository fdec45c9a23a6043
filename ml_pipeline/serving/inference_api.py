"""The inference API: API Gateway REST (one OpenAPI document), the prediction and management functions, and
the asynchronous path (Kinesis on-demand stream -> consumer -> results table with a TTL).

API Gateway writes access logs only when the account's CloudWatch role is set (``aws.apigateway.Account``),
an account-and-region singleton whose deletion resets the setting: it stays out of this stack (a
one-time step in the README).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from ml_pipeline.serving import openapi
from ml_pipeline.serving.settings import ServingSettings
from shared import iam
from shared.context import AwsContext
from shared.lambda_function import PythonFunction, PythonFunctionArgs
from shared.logs import encrypted_log_group
from shared.table import Table, TableArgs

CACHE_SECONDS = 10
FAILURE_RETENTION_S = 14 * 24 * 3600
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "ip": "$context.identity.sourceIp", "caller": "$context.identity.caller",
    "user": "$context.identity.userArn", "apiKeyId": "$context.identity.apiKeyId",
    "requestTime": "$context.requestTime", "httpMethod": "$context.httpMethod", "resourcePath": "$context.resourcePath",
    "status": "$context.status", "protocol": "$context.protocol", "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency", "latency": "$context.responseLatency",
    "error": "$context.error.message", "integrationError": "$context.integration.error",
    "xrayTraceId": "$context.xrayTraceId"}, separators=(",", ":"))


@dataclass(frozen=True)
class InferenceApiArgs:
    ctx: AwsContext
    name_prefix: str
    stage_name: str
    settings: ServingSettings
    endpoint_name: str
    endpoint_arn: pulumi.Input[str]
    versions_table_name: pulumi.Input[str]
    versions_table_arn: pulumi.Input[str]
    ab_table_name: pulumi.Input[str]
    ab_table_arn: pulumi.Input[str]
    state_machine_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    metadata_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool = False


class InferenceApi(pulumi.ComponentResource):
    rest_api: aws.apigateway.RestApi
    stage: aws.apigateway.Stage
    stream: aws.kinesis.Stream
    results_table: Table
    failure_queue: aws.sqs.Queue
    operator_role: aws.iam.Role
    api_key: aws.apigateway.ApiKey
    url: pulumi.Output[str]
    document: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceApiArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:serving:InferenceApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s, ctx, prefix = args.settings, args.ctx, args.name_prefix

        self.results_table = Table(f"{name}-results", TableArgs(
            table_name=f"{prefix}-predictions", kms_key_arn=args.metadata_key_arn, hash_key="request_id",
            attributes={"request_id": "S"}, ttl_attribute="expires_at",
            deletion_protection=args.deletion_protection), opts=child)
        self.stream = aws.kinesis.Stream(
            f"{name}-stream", name=f"{prefix}-predict-requests",
            stream_mode_details=aws.kinesis.StreamStreamModeDetailsArgs(stream_mode="ON_DEMAND"),
            encryption_type="KMS", kms_key_id=args.data_key_arn, retention_period=24, opts=child)
        self.failure_queue = aws.sqs.Queue(
            f"{name}-failures", name=f"{prefix}-predict-failures", kms_master_key_id=args.data_key_arn,
            kms_data_key_reuse_period_seconds=300, message_retention_seconds=FAILURE_RETENTION_S, opts=child)
        aws.sqs.QueuePolicy(f"{name}-failures-policy", queue_url=self.failure_queue.url,
                            policy=iam.document([iam.deny_insecure_transport("sqs", self.failure_queue.arn)]), opts=child)

        ttl_s = str(s.result_ttl_hours * 3600)
        table_key = iam.allow(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [args.metadata_key_arn],
                              sid="MetadataKey")
        # Synchronous (API) invocations return errors to the caller: no dead-letter queue applies.
        common = dict(ctx=ctx, log_kms_key_arn=args.metadata_key_arn, architecture=s.function_architecture,
                      log_retention_days=args.log_retention_days, log_level=s.log_level,
                      failures_handled_by_event_source=True)
        self.consumer = PythonFunction(f"{name}-consumer", PythonFunctionArgs(
            function_name=f"{prefix}-predict-consumer", source_folder="serving_consumer",
            description="Asynchronous predictions: stream batches -> endpoint -> results table",
            memory_mb=s.predict_memory_mb, timeout_s=120,
            environment={"ENDPOINT_NAME": args.endpoint_name, "RESULTS_TABLE": self.results_table.name,
                         "RESULT_TTL_SECONDS": ttl_s, "MAX_INSTANCES_PER_CALL": str(s.invoke_batch_size),
                         "LOG_LEVEL": s.log_level},
            statements=[
                iam.allow(["sagemaker:InvokeEndpoint"], [args.endpoint_arn], sid="Invoke"),
                iam.allow(["dynamodb:BatchWriteItem"], [self.results_table.arn], sid="Results"),
                iam.allow(["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                           "kinesis:GetShardIterator", "kinesis:ListShards"], [self.stream.arn], sid="Stream"),
                # Reading the stream decrypts; sending to the on-failure queue (the mapping does it with this
                # role) takes GenerateDataKey and Decrypt: both are on the data key.
                iam.allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.data_key_arn], sid="StreamAndQueueKey"),
                iam.allow(["sqs:SendMessage"], [self.failure_queue.arn], sid="OnFailure"),
                table_key],
            **common), opts=child)
        self.predict = PythonFunction(f"{name}-predict", PythonFunctionArgs(
            function_name=f"{prefix}-predict", source_folder="serving_predict",
            description="POST /predict, POST /predict/async, GET /predictions/{id}",
            memory_mb=s.predict_memory_mb, timeout_s=s.predict_timeout_s,
            environment={"ENDPOINT_NAME": args.endpoint_name, "AB_TABLE": args.ab_table_name,
                         "RESULTS_TABLE": self.results_table.name, "STREAM_NAME": self.stream.name,
                         "MAX_REQUEST_BYTES": str(s.max_request_kb * 1024), "CACHE_SECONDS": str(CACHE_SECONDS),
                         "RESULT_TTL_SECONDS": ttl_s, "LOG_LEVEL": s.log_level},
            statements=[
                iam.allow(["sagemaker:InvokeEndpoint"], [args.endpoint_arn], sid="Invoke"),
                iam.allow(["dynamodb:GetItem"], [args.ab_table_arn], sid="Serving"),
                iam.allow(["dynamodb:GetItem", "dynamodb:PutItem"], [self.results_table.arn], sid="Results"),
                iam.allow(["kinesis:PutRecord"], [self.stream.arn], sid="Stream"),
                iam.allow(["kms:GenerateDataKey"], [args.data_key_arn], sid="StreamKey"),
                table_key],
            # After the consumer: an old consumer marks a record of the new layout failed for good, so the
            # consumer (which reads both layouts) is updated before the function that writes them.
            **common), opts=pulumi.ResourceOptions(parent=self, depends_on=[self.consumer]))
        self.manage = PythonFunction(f"{name}-manage", PythonFunctionArgs(
            function_name=f"{prefix}-serving-manage", source_folder="serving_manage",
            description="Management routes: versions, A/B tests and weights, promote, roll back",
            memory_mb=256, timeout_s=29,
            environment={"VERSIONS_TABLE": args.versions_table_name, "AB_TABLE": args.ab_table_name,
                         "ENDPOINT_NAME": args.endpoint_name, "MODEL_NAME": s.model_name,
                         "STATE_MACHINE_ARN": args.state_machine_arn, "LOG_LEVEL": s.log_level},
            statements=[
                # Lists versions (Query) and marks promotions (UpdateItem); it never reads one version by key.
                iam.allow(["dynamodb:Query", "dynamodb:UpdateItem"], [args.versions_table_arn], sid="Versions"),
                iam.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], [args.ab_table_arn],
                          sid="AbTests"),
                iam.allow(["sagemaker:UpdateEndpointWeightsAndCapacities"], [args.endpoint_arn], sid="Weights"),
                iam.allow(["states:StartExecution"], [args.state_machine_arn], sid="Rollback"),
                table_key],
            **common), opts=child)

        aws.lambda_.EventSourceMapping(
            f"{name}-consumer-mapping", event_source_arn=self.stream.arn, function_name=self.consumer.arn,
            starting_position="LATEST", batch_size=s.stream_batch_size,
            maximum_batching_window_in_seconds=s.stream_batch_window_s,
            bisect_batch_on_function_error=True, maximum_retry_attempts=s.stream_max_retries,
            maximum_record_age_in_seconds=s.stream_max_record_age_s,
            function_response_types=["ReportBatchItemFailures"],
            destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
                on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(
                    destination_arn=self.failure_queue.arn)),
            opts=child)

        # The operator role: the only principal the resource policy lets through to management routes.
        self.operator_role = aws.iam.Role(
            f"{name}-operator", name=f"{prefix}-serving-operator", description="Calls the inference API's management routes",
            assume_role_policy=iam.document([{"Effect": "Allow", "Principal": {"AWS": ctx.root_principal()},
                                              "Action": "sts:AssumeRole"}]),
            max_session_duration=3600, opts=child)

        self.document = pulumi.Output.all(
            predict=self.predict.function.invoke_arn, manage=self.manage.function.invoke_arn,
            operator=self.operator_role.arn, root=ctx.root_principal(),
        ).apply(lambda v: json.dumps(openapi.document(
            title=f"{prefix}-inference", predict_invoke_arn=v["predict"], manage_invoke_arn=v["manage"],
            operator_role_arn=v["operator"], account_root_arn=v["root"]), sort_keys=True))
        self.rest_api = aws.apigateway.RestApi(
            f"{name}-api", name=f"{prefix}-inference", body=self.document,
            endpoint_configuration=aws.apigateway.RestApiEndpointConfigurationArgs(types="REGIONAL"),
            api_key_source="HEADER", opts=child)
        execute = pulumi.Output.concat(self.rest_api.execution_arn, "/", args.stage_name)
        aws.iam.RolePolicy(f"{name}-operator-policy", role=self.operator_role.id, policy=iam.document([iam.allow(
            ["execute-api:Invoke"],
            [pulumi.Output.concat(execute, "/", m, p.split("{")[0], "*") for m, p in openapi.MANAGEMENT],
            sid="ManagementRoutes")]), opts=child)
        for fn_name, fn in (("predict", self.predict), ("manage", self.manage)):
            aws.lambda_.Permission(f"{name}-{fn_name}-invoke", action="lambda:InvokeFunction", function=fn.name,
                                   principal="apigateway.amazonaws.com",
                                   source_arn=pulumi.Output.concat(self.rest_api.execution_arn, "/*/*"), opts=child)

        deployment = aws.apigateway.Deployment(
            f"{name}-deployment", rest_api=self.rest_api.id,
            # A new deployment whenever the document changes (pulumi-aws 7: no stage_name here).
            triggers={"document": self.document.apply(lambda d: openapi.document_hash(json.loads(d)))},
            opts=child)
        access_logs = encrypted_log_group(
            f"{name}-access-logs", log_group_name=f"/mlplatform/{prefix}/inference-api-access",
            kms_key_arn=args.metadata_key_arn, retention_days=args.log_retention_days, opts=child)
        self.stage = aws.apigateway.Stage(
            f"{name}-stage", rest_api=self.rest_api.id, deployment=deployment.id, stage_name=args.stage_name,
            xray_tracing_enabled=True,
            access_log_settings=aws.apigateway.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT), opts=child)
        aws.apigateway.MethodSettings(
            f"{name}-method-settings", rest_api=self.rest_api.id, stage_name=self.stage.stage_name, method_path="*/*",
            settings=aws.apigateway.MethodSettingsSettingsArgs(
                # Execution logging OFF: API Gateway would write it to a log group it creates itself
                # (API-Gateway-Execution-Logs_<id>/<stage>: no customer key, no retention, outside the stack);
                # the access log above carries each request's error and integration error.
                metrics_enabled=True, logging_level="OFF", data_trace_enabled=False,
                # The stage-wide ceiling, for every caller (the usage plan meters per API key).
                throttling_rate_limit=float(s.api_rate_limit * 2), throttling_burst_limit=s.api_burst_limit * 2),
            opts=child)
        plan = aws.apigateway.UsagePlan(
            f"{name}-usage-plan", name=f"{prefix}-inference-clients",
            api_stages=[aws.apigateway.UsagePlanApiStageArgs(api_id=self.rest_api.id, stage=self.stage.stage_name)],
            throttle_settings=aws.apigateway.UsagePlanThrottleSettingsArgs(
                rate_limit=float(s.api_rate_limit), burst_limit=s.api_burst_limit),
            quota_settings=aws.apigateway.UsagePlanQuotaSettingsArgs(limit=s.api_quota_per_day, period="DAY"),
            opts=child)
        self.api_key = aws.apigateway.ApiKey(f"{name}-client-key", name=f"{prefix}-inference-client",
                                             description="Prediction clients (metered by the usage plan)", opts=child)
        aws.apigateway.UsagePlanKey(f"{name}-client-key-plan", key_id=self.api_key.id, key_type="API_KEY",
                                    usage_plan_id=plan.id, opts=child)

        aws.cloudwatch.MetricAlarm(
            f"{name}-async-failures", name=f"{prefix}-predict-failures-queued",
            alarm_description="Asynchronous prediction requests gave up after retries (on-failure queue)",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": self.failure_queue.name}, statistic="Maximum", period=300,
            evaluation_periods=1, threshold=0.0, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[args.alarm_topic_arn], opts=child)
        aws.cloudwatch.MetricAlarm(
            f"{name}-iterator-age", name=f"{prefix}-predict-consumer-lag",
            alarm_description="The consumer lags the stream by over 5 minutes",
            namespace="AWS/Lambda", metric_name="IteratorAge", dimensions={"FunctionName": self.consumer.name},
            statistic="Maximum", period=60, evaluation_periods=5, threshold=300000.0,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            alarm_actions=[args.alarm_topic_arn], opts=child)

        self.url = pulumi.Output.concat("https://", self.rest_api.id, ".execute-api.", ctx.region, ".",
                                        ctx.dns_suffix, "/", self.stage.stage_name)
        self.register_outputs({"url": self.url, "stream_name": self.stream.name,
                               "results_table_name": self.results_table.name,
                               "operator_role_arn": self.operator_role.arn})
