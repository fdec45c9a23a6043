"""Model deployment: the workflow that owns the endpoint, its A/B table, rollback alarms and autoscaling function.

Pulumi creates the stable names around the endpoint (endpoint name, variant names ``champion`` and
``challenger``), never the endpoint, its configs or its scalable targets: the deployment workflow
(``deployment_definition.py``) creates and updates those, so ``pulumi up`` never reverts a model in
service and the first ``pulumi up`` needs no model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from ml_pipeline.serving.deployment_definition import DeploymentParams, definition
from ml_pipeline.serving.settings import VARIANTS, ServingSettings
from shared import iam
from shared.context import AwsContext
from shared.lambda_function import PythonFunction, PythonFunctionArgs
from shared.logs import encrypted_log_group
from shared.table import Table, TableArgs

# The endpoint's metrics (AWS/SageMaker) that roll a blue/green update back when they alarm.
ENDPOINT_NAMESPACE = "AWS/SageMaker"
CAPTURE_PREFIX = "data-capture/"  # SageMaker appends <endpoint>/<variant>/yyyy/mm/dd/hh/
# Step Functions delivers execution logs through CloudWatch Logs' vended-log delivery, whose APIs have no
# resource-level permissions (the log group's name and its key decide where logs may go).
LOG_DELIVERY_ACTIONS = ("logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups",
                        "logs:DescribeResourcePolicies", "logs:GetLogDelivery", "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy", "logs:UpdateLogDelivery")
XRAY_ACTIONS = ("xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords",
                "xray:PutTraceSegments")


@dataclass(frozen=True)
class ModelDeploymentArgs:
    ctx: AwsContext
    name_prefix: str
    settings: ServingSettings
    image_uri: pulumi.Input[str]
    versions_table_name: pulumi.Input[str]
    versions_table_arn: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    # Where data capture goes (the artifacts bucket, on the data key), under capture_prefix.
    capture_bucket_name: pulumi.Input[str]
    capture_bucket_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    metadata_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool = False
    subnet_ids: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    security_group_ids: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    capture_prefix: str = CAPTURE_PREFIX


def state_machine_name(name_prefix: str) -> str:
    """The deployment workflow's name: the training workflow hands approved versions to it by ARN."""
    return f"{name_prefix}-deploy-model"


def endpoint_name(name_prefix: str, model_name: str) -> str:
    name = f"{name_prefix}-{model_name}"
    if len(name) > 50:
        # Model and config names add -v<version>-<8 hex> to the prefix; the endpoint name must stay short.
        raise ValueError(f"endpoint name {name!r} is over 50 characters")
    return name


def _alarms(name: str, args: ModelDeploymentArgs, endpoint: str, child: pulumi.ResourceOptions) -> list:
    s = args.settings
    alarms = []
    for variant in VARIANTS:
        dims = {"EndpointName": endpoint, "VariantName": variant}
        alarms.append(aws.cloudwatch.MetricAlarm(
            f"{name}-{variant}-errors", name=f"{endpoint}-{variant}-5xx-rate",
            alarm_description=f"{variant}: model 5xx errors over {s.error_rate_alarm_percent}% of invocations "
                              "(rolls a blue/green deployment back)",
            comparison_operator="GreaterThanThreshold", threshold=s.error_rate_alarm_percent,
            evaluation_periods=2, datapoints_to_alarm=2, treat_missing_data="notBreaching",
            metric_queries=[
                aws.cloudwatch.MetricAlarmMetricQueryArgs(id="errors", return_data=False, metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=ENDPOINT_NAMESPACE, metric_name="Invocation5XXErrors", dimensions=dims, period=60, stat="Sum")),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(id="invocations", return_data=False, metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                    namespace=ENDPOINT_NAMESPACE, metric_name="Invocations", dimensions=dims, period=60, stat="Sum")),
                aws.cloudwatch.MetricAlarmMetricQueryArgs(id="rate", return_data=True, label="5xx percent",
                                                          expression="IF(invocations > 0, 100 * errors / invocations, 0)"),
            ],
            alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn], opts=child))
        alarms.append(aws.cloudwatch.MetricAlarm(
            f"{name}-{variant}-latency", name=f"{endpoint}-{variant}-latency",
            alarm_description=f"{variant}: p99 model latency over {s.latency_alarm_ms} ms (rolls a deployment back)",
            namespace=ENDPOINT_NAMESPACE, metric_name="ModelLatency", dimensions=dims, extended_statistic="p99",
            period=60, evaluation_periods=3, datapoints_to_alarm=3, treat_missing_data="notBreaching",
            # ModelLatency is reported in microseconds.
            comparison_operator="GreaterThanThreshold", threshold=float(s.latency_alarm_ms * 1000),
            alarm_actions=[args.alarm_topic_arn], ok_actions=[args.alarm_topic_arn], opts=child))
    return alarms


class ModelDeployment(pulumi.ComponentResource):
    ab_table: Table
    state_machine: aws.sfn.StateMachine
    execution_role: aws.iam.Role
    autoscaling: PythonFunction
    endpoint_name: str
    endpoint_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:serving:ModelDeployment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s, ctx, prefix = args.settings, args.ctx, args.name_prefix
        endpoint = self.endpoint_name = endpoint_name(prefix, s.model_name)
        self.capture_prefix = args.capture_prefix  # under the logs bucket; drift reads it
        self.endpoint_arn = ctx.arn("sagemaker", f"endpoint/{endpoint}")
        models_arn = ctx.arn("sagemaker", f"model/{prefix}-v*")
        configs_arn = ctx.arn("sagemaker", f"endpoint-config/{prefix}-v*")

        # What the endpoint serves ("current"), every A/B test ("test#<id>") and the history of every
        # change ("history#<time>#<id>"), keyed by endpoint.
        self.ab_table = Table(f"{name}-ab-tests", TableArgs(
            table_name=f"{prefix}-ab-tests", kms_key_arn=args.metadata_key_arn, hash_key="endpoint_name",
            range_key="record", attributes={"endpoint_name": "S", "record": "S"},
            deletion_protection=args.deletion_protection), opts=child)

        # The role SageMaker runs the model with: reads the artifact, writes captured requests.
        self.execution_role = aws.iam.Role(
            f"{name}-sagemaker-role", description=f"SageMaker execution role of {endpoint}",
            assume_role_policy=iam.service_trust_policy("sagemaker.amazonaws.com", source_account=ctx.account_id),
            opts=child)
        execution_statements = [
            iam.allow(["s3:GetObject"], [iam.objects_in(args.artifacts_bucket_arn)], sid="ModelArtifacts"),
            iam.allow(["s3:PutObject"], [iam.objects_in(args.capture_bucket_arn, args.capture_prefix)], sid="DataCapture"),
            # The captures are written with the data capture config's KmsKeyId: "If you use a KMS key ID ..., the
            # SageMaker execution role must include permissions to call kms:Encrypt" (the API reference on a
            # KmsKeyId for S3 output; the training role has it for the same reason).
            iam.allow(["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], [args.data_key_arn], sid="DataKey"),
            iam.allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                      [ctx.arn("logs", f"log-group:/aws/sagemaker/Endpoints/{endpoint}:*")], sid="ContainerLogs"),
            iam.unscoped(["cloudwatch:PutMetricData"], sid="ContainerMetrics", why="PutMetricData has no resources",
                         conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}),
            # The image is an AWS Deep Learning Container: SageMaker pulls it with its own credentials.
        ]
        if args.subnet_ids:
            execution_statements.append(iam.allow(
                ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                 "ec2:DeleteNetworkInterfacePermission"],
                [ctx.arn("ec2", "network-interface/*"), ctx.arn("ec2", "subnet/*"), ctx.arn("ec2", "security-group/*")],
                sid="VpcInterfaces"))
            execution_statements.append(iam.unscoped(
                ["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
                 "ec2:DescribeSubnets", "ec2:DescribeVpcs"], sid="VpcDescribe",
                why="EC2 Describe actions have no resource-level permissions"))
        alarms = _alarms(name, args, endpoint, child)
        self.rollback_alarm_names = [a.name for a in alarms]  # the guardrails roll back on these
        # "Ensure that your IAM execution role has permission to perform the cloudwatch:DescribeAlarms action
        # on the auto-rollback alarms" (SageMaker developer guide, Auto-Rollback Configuration and Monitoring).
        read_rollback_alarms = iam.allow(["cloudwatch:DescribeAlarms"], [a.arn for a in alarms], sid="RollbackAlarms")
        execution_statements.append(read_rollback_alarms)
        aws.iam.RolePolicy(f"{name}-sagemaker-policy", role=self.execution_role.id,
                           policy=iam.document(execution_statements), opts=child)

        self.autoscaling = PythonFunction(f"{name}-autoscaling", PythonFunctionArgs(
            ctx=ctx, function_name=f"{prefix}-endpoint-autoscaling", source_folder="serving_autoscaling",
            description=f"Registers (and where AWS requires it deregisters) autoscaling of {endpoint}'s variants",
            log_kms_key_arn=args.metadata_key_arn, memory_mb=256, timeout_s=60, architecture=s.function_architecture,
            log_retention_days=args.log_retention_days, log_level=s.log_level,
            # Invoked synchronously by the workflow, which retries and records a failure itself.
            failures_handled_by_event_source=True,
            environment={
                "VARIANTS": ",".join(VARIANTS), "MIN_CAPACITY": str(s.autoscaling_min),
                "MAX_CAPACITY": str(s.autoscaling_max),
                "TARGET_INVOCATIONS_PER_INSTANCE": str(s.invocations_per_instance),
                "SCALE_IN_COOLDOWN_SECONDS": str(s.scale_in_cooldown_s),
                "SCALE_OUT_COOLDOWN_SECONDS": str(s.scale_out_cooldown_s), "LOG_LEVEL": s.log_level},
            statements=[
                iam.allow(["application-autoscaling:DeregisterScalableTarget",
                           "application-autoscaling:PutScalingPolicy", "application-autoscaling:RegisterScalableTarget"],
                          [ctx.arn("application-autoscaling", "scalable-target/*")], sid="ScalableTargets"),
                # Application Auto Scaling checks that the caller may do what scaling will do.
                iam.allow(["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"],
                          [self.endpoint_arn], sid="Endpoint"),
                iam.allow(["sagemaker:DescribeEndpointConfig"], [configs_arn], sid="EndpointConfigs"),
                # Application Auto Scaling creates its service-linked role (an account singleton, never
                # a stack's) on the first registration in an account, as the caller.
                iam.allow(["iam:CreateServiceLinkedRole"], [pulumi.Output.concat(
                    "arn:", ctx.partition, ":iam::", ctx.account_id, ":role/aws-service-role/",
                    "sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")],
                    sid="ScalingServiceRole", conditions={"StringLike": {
                        "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}}),
                iam.allow(["cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"],
                          [ctx.arn("cloudwatch", f"alarm:TargetTracking-endpoint/{endpoint}/*")],
                          sid="TargetTrackingAlarms"),
            ],
        ), opts=child)

        sfn_role = aws.iam.Role(
            f"{name}-workflow-role", description=f"Deployment workflow of {endpoint}",
            assume_role_policy=iam.service_trust_policy("states.amazonaws.com", source_account=ctx.account_id),
            opts=child)
        sfn_policy = aws.iam.RolePolicy(f"{name}-workflow-policy", role=sfn_role.id, policy=iam.document([
            iam.allow(["sagemaker:AddTags", "sagemaker:CreateModel"], [models_arn], sid="Models"),
            iam.allow(["sagemaker:AddTags", "sagemaker:CreateEndpointConfig"], [configs_arn], sid="EndpointConfigs"),
            # Creating or updating an endpoint is authorized on the endpoint and on the config it takes.
            iam.allow(["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"], [self.endpoint_arn, configs_arn],
                      sid="EndpointDeploy"),
            iam.allow(["sagemaker:AddTags", "sagemaker:DescribeEndpoint"], [self.endpoint_arn], sid="Endpoint"),
            iam.allow(["iam:PassRole"], [self.execution_role.arn], sid="PassExecutionRole",
                      conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
            iam.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                      [args.versions_table_arn, self.ab_table.arn], sid="Tables"),
            iam.allow(["lambda:InvokeFunction"], [self.autoscaling.arn], sid="Autoscaling"),
            # UpdateEndpoint names the rollback alarms; the caller may read them too.
            read_rollback_alarms,
            iam.allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.metadata_key_arn], sid="TableKey"),
            # SageMaker encrypts the endpoint's volumes and captured data with the data key through
            # grants it creates with the caller's permissions.
            iam.allow(["kms:CreateGrant"], [args.data_key_arn], sid="EndpointKeyGrants",
                      conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}),
            iam.allow(["kms:DescribeKey"], [args.data_key_arn], sid="EndpointKey"),
            iam.unscoped(list(LOG_DELIVERY_ACTIONS), sid="ExecutionLogDelivery",
                         why="CloudWatch Logs vended log delivery APIs have no resource-level permissions"),
            iam.unscoped(list(XRAY_ACTIONS), sid="XRay", why="X-Ray APIs have no resource-level permissions"),
        ]), opts=child)
        # Under /aws/vendedlogs/states/<prefix>-*: the metadata key lets CloudWatch Logs use it there only.
        log_group = encrypted_log_group(
            f"{name}-workflow-logs", log_group_name=f"/aws/vendedlogs/states/{state_machine_name(prefix)}",
            kms_key_arn=args.metadata_key_arn, retention_days=args.log_retention_days, opts=child)

        # SageMaker appends <endpoint>/<variant>/yyyy/mm/dd/hh/ to the destination (where drift reads).
        capture_uri = pulumi.Output.concat("s3://", args.capture_bucket_name, "/", args.capture_prefix.rstrip("/"))
        body = pulumi.Output.all(
            image=args.image_uri, role=self.execution_role.arn, fn=self.autoscaling.arn, capture=capture_uri,
            data_key=args.data_key_arn, versions=args.versions_table_name, ab=self.ab_table.name, region=ctx.region,
            alarms=pulumi.Output.all(*[a.name for a in alarms]),
            subnets=pulumi.Output.all(*args.subnet_ids), groups=pulumi.Output.all(*args.security_group_ids),
        ).apply(lambda v: json.dumps(definition(DeploymentParams(
            settings=s, name_prefix=prefix, endpoint_name=endpoint, versions_table=v["versions"], ab_table=v["ab"],
            image_uri=v["image"], execution_role_arn=v["role"], autoscaling_function_arn=v["fn"],
            capture_s3_uri=v["capture"], data_key_arn=v["data_key"], volume_key_arn=v["data_key"],
            rollback_alarm_names=v["alarms"], region=v["region"], subnet_ids=v["subnets"],
            security_group_ids=v["groups"])), indent=2))
        self.state_machine = aws.sfn.StateMachine(
            f"{name}-workflow", name=state_machine_name(prefix), role_arn=sfn_role.arn, definition=body,
            type="STANDARD",
            logging_configuration=aws.sfn.StateMachineLoggingConfigurationArgs(
                level="ALL", include_execution_data=True, log_destination=pulumi.Output.concat(log_group.arn, ":*")),
            tracing_configuration=aws.sfn.StateMachineTracingConfigurationArgs(enabled=True),
            # Step Functions checks the role's permissions (log delivery included) when it creates the machine.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[sfn_policy]))
        self.register_outputs({"endpoint_name": endpoint, "ab_table_name": self.ab_table.name,
                               "state_machine_arn": self.state_machine.arn})
