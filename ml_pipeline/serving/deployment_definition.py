"""The deployment workflow's Amazon States Language definition, built from plain values (no Outputs here).

Pulumi does not manage the endpoint, its configs or its scalable targets (the provider re-sends the
config in its state on every update and resets weights: TF #48990, #46663); this workflow does. It
deploys a version (input ``{"model_name", "version"}``) or rolls back (``{"model_name", "action":
"rollback"}``, optionally ``"version"``):

- a new SageMaker model and endpoint config per run (both variants, data capture, volume key);
- CreateEndpoint the first time, later UpdateEndpoint with blue/green canary guardrails, automatic
  rollback on the stack's alarms, and the live instance counts retained (the weights come from the
  new config: a deploy puts the new version on ``challenger`` at the configured weight);
- DescribeEndpoint polled with a bounded counter; success only when InService on the NEW config (an
  automatic rollback ends InService on the old one and is recorded as rolled back);
- the model-versions and A/B tables updated, autoscaling registered through a function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ml_pipeline.serving.settings import ServingSettings

SM = "arn:aws:states:::sagemaker:"
DDB = "arn:aws:states:::dynamodb:"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
DESCRIBE_ENDPOINT = "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
# Statuses a version may have to be deployed (deploy) or redeployed (rollback).
DEPLOYABLE = ("approved",)
ROLLBACK_TARGETS = ("retired", "approved")


@dataclass(frozen=True)
class DeploymentParams:
    """Every name and ARN the definition embeds, resolved to strings."""

    settings: ServingSettings
    name_prefix: str
    endpoint_name: str
    versions_table: str
    ab_table: str
    image_uri: str
    execution_role_arn: str
    autoscaling_function_arn: str
    capture_s3_uri: str
    data_key_arn: str
    volume_key_arn: str
    rollback_alarm_names: Sequence[str]
    region: str
    subnet_ids: Sequence[str] = field(default_factory=tuple)
    security_group_ids: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 1 <= len(self.rollback_alarm_names) <= 10:
            raise ValueError(f"rollback_alarm_names: AutoRollbackConfiguration takes 1 to 10 alarms, "
                             f"got {len(self.rollback_alarm_names)}")
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            raise ValueError("subnet_ids and security_group_ids go together (VpcConfig needs both)")


def _key(model_name_path: str, version_path: str) -> dict:
    return {"model_name": {"S.$": model_name_path}, "version": {"N.$": version_path}}


def _ddb_update(table: str, key: dict, expression: str, values: dict, names: Optional[dict] = None,
                next_state: Optional[str] = None) -> dict:
    state = {"Type": "Task", "Resource": f"{DDB}updateItem", "Parameters": {
        "TableName": table, "Key": key, "UpdateExpression": expression, "ExpressionAttributeValues": values},
        "ResultPath": None, "Retry": [_retry()]}
    if names:
        state["Parameters"]["ExpressionAttributeNames"] = names
    state.update({"Next": next_state} if next_state else {"End": True})
    return state


def _retry(errors: Sequence[str] = ("States.TaskFailed",), attempts: int = 3) -> dict:
    return {"ErrorEquals": list(errors), "IntervalSeconds": 2, "MaxAttempts": attempts, "BackoffRate": 2.0}


def _catch(next_state: str) -> list[dict]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": next_state}]


def _history(p: DeploymentParams, event: str, next_state: str) -> dict:
    """One history item per outcome in the A/B table (the table says what the endpoint serves and why)."""
    return {"Type": "Task", "Resource": f"{DDB}putItem", "Parameters": {
        "TableName": p.ab_table, "Item": {
            "endpoint_name": {"S": p.endpoint_name},
            "record": {"S.$": "States.Format('history#{}#{}', $$.State.EnteredTime, $.ids.suffix)"},
            "event": {"S": event},
            "mode": {"S.$": "$.mode"},
            "model_name": {"S.$": "$.model_name"},
            "version": {"N.$": "$.names.version"},
            "endpoint_config_name": {"S.$": "$.names.config"},
            "execution": {"S.$": "$$.Execution.Id"},
            "at": {"S.$": "$$.State.EnteredTime"},
        }}, "ResultPath": None, "Retry": [_retry()], "Next": next_state}


def _variant(p: DeploymentParams, name: str) -> dict:
    s = p.settings
    return {"VariantName": name, "ModelName.$": f"$.layout.{name}.model", "InstanceType": s.instance_type,
            "InitialInstanceCount": s.instance_count, "InitialVariantWeight.$": f"$.layout.{name}.weight"}


def _layout(champion: tuple[str, str, float], challenger: tuple[str, str, float], production: tuple[str, str],
            previous_production: dict | str, previous_config: dict, status: str, variant: str) -> dict:
    """``previous_production``: a DynamoDB attribute value, or a path to one (copied as it is)."""
    def slot(version: str, model: str, weight: float) -> dict:
        return {"version.$": version, "model.$": model, "weight": weight}
    previous = ({"previous_production.$": previous_production} if isinstance(previous_production, str)
                else {"previous_production": previous_production})
    return {"Type": "Pass", "ResultPath": "$.layout", "Next": "CreateEndpointConfig", "Parameters": {
        "champion": slot(*champion), "challenger": slot(*challenger),
        "production": {"version.$": production[0], "model.$": production[1]},
        **previous, "previous_config": previous_config, "status": status, "variant": variant}}


def definition(p: DeploymentParams) -> dict:
    s = p.settings
    new = ("$.names.version", "$.names.model")
    current = "$.serving.Item"
    w = round(s.challenger_weight, 4)
    container = {
        "Image": p.image_uri,
        "ModelDataUrl.$": "$.loaded.Item.model_data_url.S",
        # The artifact carries code/inference.py (contract 5); SageMaker unpacks it to /opt/ml/model.
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20", "SAGEMAKER_REGION": p.region},
    }
    create_model = {
        "ModelName.$": "$.names.model", "PrimaryContainer": container, "ExecutionRoleArn": p.execution_role_arn,
        # The container never reaches the network; SageMaker itself fetches the artifact.
        "EnableNetworkIsolation": True,
        "Tags": [{"Key": "ModelName", "Value.$": "$.model_name"}, {"Key": "ModelVersion", "Value.$": "$.names.version"}],
    }
    if p.subnet_ids:
        create_model["VpcConfig"] = {"Subnets": list(p.subnet_ids), "SecurityGroupIds": list(p.security_group_ids)}
    endpoint_config = {
        "EndpointConfigName.$": "$.names.config",
        "ProductionVariants": [_variant(p, "champion"), _variant(p, "challenger")],
        "DataCaptureConfig": {
            "EnableCapture": s.data_capture_percent > 0,
            "InitialSamplingPercentage": s.data_capture_percent,
            "DestinationS3Uri": p.capture_s3_uri,
            "KmsKeyId": p.data_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        },
        "Tags": [{"Key": "ModelName", "Value.$": "$.model_name"}, {"Key": "ModelVersion", "Value.$": "$.names.version"}],
    }
    if s.volume_kms:
        endpoint_config["KmsKeyId"] = p.volume_key_arn
    guardrails = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": s.canary_percent},
                "WaitIntervalInSeconds": s.bake_seconds,
            },
            "TerminationWaitInSeconds": s.termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": s.max_update_seconds,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in p.rollback_alarm_names]},
    }
    now = "$$.State.EnteredTime"
    states: dict[str, dict] = {
        "CheckModel": {"Type": "Choice", "Choices": [
            {"Variable": "$.model_name", "StringEquals": s.model_name, "Next": "Route"}],
            "Default": "UnknownModel"},
        "UnknownModel": {"Type": "Fail", "Error": "UnknownModel",
                         "Cause": f"this endpoint serves model_name {s.model_name!r} only"},
        "Route": {"Type": "Choice", "Choices": [{"And": [
            {"Variable": "$.action", "IsPresent": True}, {"Variable": "$.action", "StringEquals": "rollback"}],
            "Next": "RollbackMode"}], "Default": "DeployMode"},
        "DeployMode": {"Type": "Pass", "Result": "deploy", "ResultPath": "$.mode", "Next": "LoadServing"},
        "RollbackMode": {"Type": "Pass", "Result": "rollback", "ResultPath": "$.mode", "Next": "LoadServing"},
        "LoadServing": {"Type": "Task", "Resource": f"{DDB}getItem", "Parameters": {
            "TableName": p.ab_table, "ConsistentRead": True,
            "Key": {"endpoint_name": {"S": p.endpoint_name}, "record": {"S": "current"}}},
            "ResultPath": "$.serving", "Retry": [_retry()], "Next": "ModeCheck"},
        "ModeCheck": {"Type": "Choice", "Choices": [
            {"Variable": "$.mode", "StringEquals": "deploy", "Next": "VersionGiven"},
            {"Variable": "$.serving.Item", "IsPresent": False, "Next": "NothingToRollBack"},
            {"Variable": "$.version", "IsPresent": True, "Next": "VersionGiven"},
            {"Variable": "$.serving.Item.previous_production_version.N", "IsPresent": True, "Next": "RollbackTarget"},
        ], "Default": "NothingToRollBack"},
        "NothingToRollBack": {"Type": "Fail", "Error": "NothingToRollBack",
                              "Cause": "no earlier production version is recorded for this endpoint (and none "
                                       "was given): nothing was changed. Pass a version to redeploy one."},
        "RollbackTarget": {"Type": "Pass", "InputPath": "$.serving.Item.previous_production_version.N",
                           "ResultPath": "$.version", "Next": "VersionGiven"},
        "VersionGiven": {"Type": "Choice", "Choices": [
            {"Variable": "$.version", "IsPresent": True, "Next": "LoadVersion"}], "Default": "VersionMissing"},
        "VersionMissing": {"Type": "Fail", "Error": "VersionMissing", "Cause": "a deployment needs a version"},
        "LoadVersion": {"Type": "Task", "Resource": f"{DDB}getItem", "Parameters": {
            "TableName": p.versions_table, "ConsistentRead": True,
            "Key": _key("$.model_name", "States.Format('{}', $.version)")},
            "ResultPath": "$.loaded", "Retry": [_retry()], "Next": "CheckVersion"},
        "CheckVersion": {"Type": "Choice", "Choices": [
            {"Variable": "$.loaded.Item", "IsPresent": False, "Next": "VersionNotFound"},
            {"Or": [
                {"And": [{"Variable": "$.mode", "StringEquals": "deploy"},
                         {"Or": [{"Variable": "$.loaded.Item.status.S", "StringEquals": st} for st in DEPLOYABLE]}
                         if len(DEPLOYABLE) > 1 else
                         {"Variable": "$.loaded.Item.status.S", "StringEquals": DEPLOYABLE[0]}]},
                {"And": [{"Variable": "$.mode", "StringEquals": "rollback"},
                         {"Or": [{"Variable": "$.loaded.Item.status.S", "StringEquals": st} for st in ROLLBACK_TARGETS]}]},
            ], "Next": "Suffix"}], "Default": "VersionNotDeployable"},
        "VersionNotFound": {"Type": "Fail", "Error": "VersionNotFound",
                            "Cause": "the model-versions table has no such model_name and version: nothing was changed"},
        "VersionNotDeployable": {"Type": "Fail", "Error": "VersionNotDeployable",
                                 "Cause": f"a deployment takes a version with status {' or '.join(DEPLOYABLE)}, a "
                                          f"rollback one with status {' or '.join(ROLLBACK_TARGETS)}: nothing was changed"},
        "Suffix": {"Type": "Pass", "ResultPath": "$.ids", "Parameters": {
            "suffix.$": "States.ArrayGetItem(States.StringSplit(States.UUID(), '-'), 0)"}, "Next": "Names"},
        "Names": {"Type": "Pass", "ResultPath": "$.names", "Parameters": {
            "version.$": "$.loaded.Item.version.N",
            "model.$": f"States.Format('{p.name_prefix}-v{{}}-{{}}', $.loaded.Item.version.N, $.ids.suffix)",
            "config.$": f"States.Format('{p.name_prefix}-v{{}}-{{}}', $.loaded.Item.version.N, $.ids.suffix)"},
            "Next": "CreateModel"},
        "CreateModel": {"Type": "Task", "Resource": f"{SM}createModel", "Parameters": create_model,
                        "ResultPath": None, "Retry": [_retry(("SageMaker.AmazonSageMakerException",))],
                        "Catch": _catch("RecordFailed"), "Next": "Layout"},
        "Layout": {"Type": "Choice", "Choices": [
            {"Variable": "$.mode", "StringEquals": "rollback", "Next": "RollbackLayout"},
            {"Variable": "$.serving.Item", "IsPresent": True, "Next": "ChallengerLayout"}],
            "Default": "FirstLayout"},
        # First deployment: the version serves on both variants, all traffic on champion.
        "FirstLayout": _layout((*new, 1.0), (*new, 0.0), new, {"NULL": True}, {"NULL": True}, "production", "champion"),
        # Later deployments: production stays on champion, the new version goes on challenger.
        "ChallengerLayout": _layout(
            (f"{current}.production_version.N", f"{current}.production_model.S", round(1.0 - w, 4)),
            (*new, w), (f"{current}.production_version.N", f"{current}.production_model.S"),
            f"{current}.previous_production_version", {"S.$": f"{current}.endpoint_config_name.S"},
            "approved", "challenger"),
        # Rollback: the earlier version takes both variants and all traffic.
        "RollbackLayout": _layout((*new, 1.0), (*new, 0.0), new, {"NULL": True},
                                  {"S.$": f"{current}.endpoint_config_name.S"}, "production", "champion"),
        "CreateEndpointConfig": {"Type": "Task", "Resource": f"{SM}createEndpointConfig", "Parameters": endpoint_config,
                                 "ResultPath": None, "Catch": _catch("RecordFailed"), "Next": "CreateOrUpdate"},
        "CreateOrUpdate": {"Type": "Choice", "Choices": [
            {"Variable": "$.serving.Item", "IsPresent": True, "Next": "PrepareScaling"}], "Default": "CreateEndpoint"},
        "CreateEndpoint": {"Type": "Task", "Resource": f"{SM}createEndpoint", "Parameters": {
            "EndpointName": p.endpoint_name, "EndpointConfigName.$": "$.names.config"},
            "ResultPath": None, "Catch": _catch("RecordFailed"), "Next": "InitPoll"},
        # UpdateEndpoint fails on an autoscaled variant whose instance type changes: the function
        # deregisters such variants first (and only those).
        "PrepareScaling": {"Type": "Task", "Resource": LAMBDA_INVOKE, "Parameters": {
            "FunctionName": p.autoscaling_function_arn,
            "Payload": {"action": "prepare", "endpoint_name": p.endpoint_name, "instance_type": s.instance_type}},
            "ResultPath": None, "Retry": [_retry(("Lambda.ServiceException", "Lambda.TooManyRequestsException",
                                                   "Lambda.SdkClientException"))],
            "Catch": _catch("RecordFailed"), "Next": "UpdateEndpoint"},
        "UpdateEndpoint": {"Type": "Task", "Resource": f"{SM}updateEndpoint", "Parameters": {
            "EndpointName": p.endpoint_name, "EndpointConfigName.$": "$.names.config",
            "DeploymentConfig": guardrails,
            # Live instance counts (autoscaling's) survive; the weights come from the new config.
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredWeight"}]},
            "ResultPath": None, "Catch": _catch("RecordFailed"), "Next": "InitPoll"},
        "InitPoll": {"Type": "Pass", "Result": {"count": 0}, "ResultPath": "$.poll", "Next": "WaitForEndpoint"},
        "WaitForEndpoint": {"Type": "Wait", "Seconds": s.poll_seconds, "Next": "DescribeEndpoint"},
        "DescribeEndpoint": {"Type": "Task", "Resource": DESCRIBE_ENDPOINT, "Parameters": {
            "EndpointName": p.endpoint_name},
            "ResultSelector": {"status.$": "$.EndpointStatus", "config.$": "$.EndpointConfigName"},
            "ResultPath": "$.endpoint", "Retry": [_retry(attempts=5)], "Catch": _catch("RecordFailed"),
            "Next": "EndpointState"},
        "EndpointState": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.endpoint.status", "StringEquals": "InService"},
                     {"Variable": "$.endpoint.config", "StringEqualsPath": "$.names.config"}], "Next": "MarkDeployed"},
            # InService on another config: the guardrails rolled the update back.
            {"Variable": "$.endpoint.status", "StringEquals": "InService", "Next": "RolledBackByGuardrails"},
            {"Variable": "$.endpoint.status", "StringEquals": "Failed", "Next": "EndpointFailed"},
            {"Variable": "$.poll.count", "NumericGreaterThanEquals": s.max_polls, "Next": "PollLimit"}],
            "Default": "CountPoll"},
        "CountPoll": {"Type": "Pass", "Parameters": {"count.$": "States.MathAdd($.poll.count, 1)"},
                      "ResultPath": "$.poll", "Next": "WaitForEndpoint"},
        "EndpointFailed": {"Type": "Pass", "ResultPath": "$.error", "Parameters": {
            "Error": "EndpointFailed", "Cause": "the endpoint went to Failed (DescribeEndpoint FailureReason)"},
            "Next": "RecordFailed"},
        "PollLimit": {"Type": "Pass", "ResultPath": "$.error", "Parameters": {
            "Error": "PollLimitReached",
            "Cause": f"the endpoint was not InService on the new config after {s.max_polls} polls"},
            "Next": "RecordFailed"},
        # -- success ------------------------------------------------------------------------
        "MarkDeployed": _ddb_update(
            p.versions_table, _key("$.model_name", "$.names.version"),
            "SET #s = :s, variant = :v, endpoint_config_name = :c, sagemaker_model_name = :m, deployed_at = :t, "
            "updated_at = :t",
            {":s": {"S.$": "$.layout.status"}, ":v": {"S.$": "$.layout.variant"}, ":c": {"S.$": "$.names.config"},
             ":m": {"S.$": "$.names.model"}, ":t": {"S.$": now}}, {"#s": "status"}, "RolledBackVersion?"),
        "RolledBackVersion?": {"Type": "Choice", "Choices": [
            {"Variable": "$.mode", "StringEquals": "rollback", "Next": "MarkReplacedRolledBack"}],
            "Default": "RecordServing"},
        "MarkReplacedRolledBack": _ddb_update(
            p.versions_table, _key("$.model_name", f"{current}.production_version.N"),
            "SET #s = :s, updated_at = :t", {":s": {"S": "rolled-back"}, ":t": {"S.$": now}}, {"#s": "status"},
            "RecordServing"),
        "RecordServing": {"Type": "Task", "Resource": f"{DDB}putItem", "Parameters": {
            "TableName": p.ab_table, "Item": {
                "endpoint_name": {"S": p.endpoint_name}, "record": {"S": "current"},
                "model_name": {"S.$": "$.model_name"},
                "endpoint_config_name": {"S.$": "$.names.config"},
                "previous_endpoint_config_name.$": "$.layout.previous_config",
                "champion_version": {"N.$": "$.layout.champion.version"},
                "champion_model": {"S.$": "$.layout.champion.model"},
                "champion_weight": {"N.$": "States.Format('{}', $.layout.champion.weight)"},
                "challenger_version": {"N.$": "$.layout.challenger.version"},
                "challenger_model": {"S.$": "$.layout.challenger.model"},
                "challenger_weight": {"N.$": "States.Format('{}', $.layout.challenger.weight)"},
                "production_version": {"N.$": "$.layout.production.version"},
                "production_model": {"S.$": "$.layout.production.model"},
                "previous_production_version.$": "$.layout.previous_production",
                "updated_at": {"S.$": now},
                "execution": {"S.$": "$$.Execution.Id"}}},
            "ResultPath": None, "Retry": [_retry()], "Next": "HistoryDeployed"},
        "HistoryDeployed": _history(p, "deployed", "RegisterScaling"),
        "RegisterScaling": {"Type": "Task", "Resource": LAMBDA_INVOKE, "Parameters": {
            "FunctionName": p.autoscaling_function_arn,
            "Payload": {"action": "register", "endpoint_name": p.endpoint_name}},
            "ResultPath": None, "Retry": [_retry(("Lambda.ServiceException", "Lambda.TooManyRequestsException",
                                                   "Lambda.SdkClientException", "States.TaskFailed"))],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ScalingFailed"}],
            "Next": "Deployed"},
        "ScalingFailed": {"Type": "Fail", "Error": "AutoscalingRegistrationFailed",
                          "Cause": "the endpoint serves the new config and the tables say so, but registering "
                                   "autoscaling failed: run the deployment's autoscaling function again"},
        "Deployed": {"Type": "Succeed"},
        # -- automatic rollback and failures --------------------------------------------------
        "RolledBackByGuardrails": {"Type": "Choice", "Choices": [
            {"Variable": "$.mode", "StringEquals": "deploy", "Next": "MarkVersionRolledBack"}],
            "Default": "HistoryRolledBack"},
        "MarkVersionRolledBack": _ddb_update(
            p.versions_table, _key("$.model_name", "$.names.version"), "SET #s = :s, updated_at = :t",
            {":s": {"S": "rolled-back"}, ":t": {"S.$": now}}, {"#s": "status"}, "HistoryRolledBack"),
        "HistoryRolledBack": _history(p, "rolled-back-by-guardrails", "DeploymentRolledBack"),
        "DeploymentRolledBack": {"Type": "Fail", "Error": "DeploymentRolledBack",
                                 "Cause": "the endpoint is InService on its previous config: the deployment "
                                          "guardrails rolled the update back (an alarm fired)"},
        "RecordFailed": {"Type": "Task", "Resource": f"{DDB}putItem", "Parameters": {
            "TableName": p.ab_table, "Item": {
                "endpoint_name": {"S": p.endpoint_name},
                "record": {"S.$": "States.Format('history#{}#{}', $$.State.EnteredTime, $.ids.suffix)"},
                "event": {"S": "failed"}, "mode": {"S.$": "$.mode"}, "model_name": {"S.$": "$.model_name"},
                "version": {"N.$": "$.names.version"}, "endpoint_config_name": {"S.$": "$.names.config"},
                "error": {"S.$": "States.JsonToString($.error)"},
                "execution": {"S.$": "$$.Execution.Id"}, "at": {"S.$": now}}},
            "ResultPath": None, "Retry": [_retry()], "Next": "DeploymentFailed"},
        "DeploymentFailed": {"Type": "Fail", "Error": "DeploymentFailed",
                             "Cause": "the deployment failed; the A/B table's history item has the error. The "
                                      "endpoint and the tables still describe the previous deployment"},
    }
    return {
        "Comment": "Deploy a model version to the endpoint (blue/green canary), or roll back to an earlier one",
        "StartAt": "CheckModel",
        "States": states,
        # Creation plus a blue/green update with bake and termination wait, then a margin.
        "TimeoutSeconds": s.max_polls * s.poll_seconds + 3600,
    }
