"""The training workflow's Amazon States Language definition, built as plain data from plain values.

One builder serves both the deployed state machine (SageMaker tasks through ``.sync``) and the variant
the tests execute in moto (``request_response=True``): moto runs SageMaker only as request-response
calls, so that variant follows each create call with the Describe call ``.sync`` would have made and a
status check, and everything else is the same data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

# Contract 6: what train.py prints and the regex every metric definition uses.
METRIC_NAMES = ("train:loss", "train:accuracy", "validation:loss", "validation:accuracy")
TUNING_OBJECTIVE = "validation:accuracy"
SUBMIT_DIRECTORY = "/opt/ml/input/data/code/sourcedir.tar.gz"
EVALUATION_ENTRYPOINT = [
    "/bin/bash", "-c",
    # Contract 7: evaluate.py from the same code package the training job ran.
    "set -e; mkdir -p /tmp/code; tar -xzf /opt/ml/processing/input/code/sourcedir.tar.gz -C /tmp/code; "
    "cd /tmp/code; exec python evaluate.py",
]
# Families whose instances bring NVMe instance storage: SageMaker rejects VolumeKmsKeyId for them
# (the local volume is encrypted by the instance's hardware module instead).
_LOCAL_STORAGE = re.compile(r"^(g4dn|g5|g6|g6e|p3dn|p4d|p4de|p5|p5e|p5en|trn1|trn1n|[a-z]+\d+[a-z]*d[a-z]*)$")

LAMBDA_RETRY = {"ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                                "Lambda.TooManyRequestsException"],
                "IntervalSeconds": 2, "MaxAttempts": 4, "BackoffRate": 2.0}
# Optimized integrations report API errors as <Service>.<SDK exception>; the generic one
# (AmazonDynamoDBException, AmazonSageMakerException, ...) also carries throttling, so it is retried
# with the specific ones: a request rejected for other reasons fails again within seconds and is caught.
DYNAMODB_RETRY = {"ErrorEquals": ["DynamoDB.AmazonDynamoDBException", "DynamoDB.ProvisionedThroughputExceededException",
                                  "DynamoDB.ThrottlingException", "DynamoDB.InternalServerErrorException",
                                  "DynamoDB.RequestLimitExceeded"],
                  "IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0}
# A create call that throttles never made a job, so its retry reuses the job name safely; a job that ran
# and failed ends the task with States.TaskFailed, which is not retried (the run fails and alarms).
# SageMakerException is the AWS SDK integrations' name (the Describe calls).
SAGEMAKER_RETRY = {"ErrorEquals": ["SageMaker.AmazonSageMakerException", "SageMaker.SageMakerException",
                                   "SageMaker.ResourceLimitExceededException", "SageMaker.ThrottlingException"],
                   "IntervalSeconds": 15, "MaxAttempts": 3, "BackoffRate": 2.0}
SNS_RETRY = {"ErrorEquals": ["SNS.AmazonSNSException", "SNS.ThrottledException", "SNS.InternalErrorException",
                             "SNS.KMSThrottlingException"],
             "IntervalSeconds": 1, "MaxAttempts": 4, "BackoffRate": 2.0}
STATES_RETRY = {"ErrorEquals": ["StepFunctions.AWSStepFunctionsException", "StepFunctions.ThrottlingException",
                                "StepFunctions.SdkClientException"],
                "IntervalSeconds": 1, "MaxAttempts": 4, "BackoffRate": 2.0}
FAILURE_STATE = "RecordFailure"
# What started a run (the input's "trigger"); a drift run names the alarm (observability's retrain rule,
# ml_pipeline/observability/drift.py RETRAIN_INPUT_TEMPLATE).
TRIGGER_MANUAL, TRIGGER_SCHEDULE, TRIGGER_DRIFT = "manual", "schedule", "drift"
DRIFT_FIELDS = ("alarm_name", "reason", "detected_at")


def has_local_storage(instance_type: str) -> bool:
    return bool(_LOCAL_STORAGE.match(instance_type.split(".")[1]))


def metric_definitions() -> list[dict[str, str]]:
    return [{"Name": name, "Regex": f"METRIC {name}=([0-9.eE+-]+)"} for name in METRIC_NAMES]


@dataclass(frozen=True)
class WorkflowSpec:
    """Every value the definition needs, resolved (no Outputs): the component fills it in an apply."""

    model_name: str
    validate_function_arn: str
    snapshot_function_arn: str
    decide_function_arn: str
    register_function_arn: str
    metrics_function_arn: str
    experiments_table: str
    versions_table: str
    alarm_topic_arn: str
    execution_role_arn: str
    training_image: str
    evaluation_image: str
    code_url: str
    models_url: str
    data_key_arn: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    instance_type: str
    instance_count: int
    volume_gb: int
    max_runtime_s: int
    max_wait_s: int
    spot: bool
    hyperparameters: dict[str, str]
    tuning_ranges: dict[str, dict[str, Any]]
    tuning_max_jobs: int
    tuning_max_parallel_jobs: int
    evaluation_instance_type: str
    evaluation_max_runtime_s: int
    deployment_state_machine_arn: Optional[str] = None
    evaluation_volume_gb: int = 30


# -- small builders --------------------------------------------------------------------------------
def _catch(result_path: str = "$.error") -> list[dict]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": FAILURE_STATE}]


def _lambda(arn: str, payload: dict, result: dict[str, str], result_path: str, next_state: str,
            comment: str) -> dict:
    return {"Type": "Task", "Comment": comment, "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": arn, "Payload": payload},
            "ResultSelector": {f"{k}.$": f"$.Payload.{v}" for k, v in result.items()},
            "ResultPath": result_path, "Retry": [LAMBDA_RETRY], "Catch": _catch(), "Next": next_state}


def _dynamodb(action: str, parameters: dict, next_state: str, comment: str, catch: bool = True) -> dict:
    state = {"Type": "Task", "Comment": comment, "Resource": f"arn:aws:states:::dynamodb:{action}",
             "Parameters": parameters, "ResultPath": None, "Retry": [DYNAMODB_RETRY], "Next": next_state}
    if catch:
        state["Catch"] = _catch()
    return state


def _run_key(spec: WorkflowSpec) -> dict:
    return {"experiment_id": {"S": spec.model_name}, "run_id": {"S.$": "$$.Execution.Name"}}


def _update_run(spec: WorkflowSpec, values: dict[str, dict], next_state: str, comment: str,
                catch: bool = True) -> dict:
    names = {f"#{k}": k for k in values}
    expression = "SET " + ", ".join(f"#{k} = :{k}" for k in values)
    return _dynamodb("updateItem", {
        "TableName": spec.experiments_table, "Key": _run_key(spec), "UpdateExpression": expression,
        "ExpressionAttributeNames": names, "ExpressionAttributeValues": {f":{k}": v for k, v in values.items()},
    }, next_state, comment, catch)


def _carry(*keys: str) -> dict:
    return {f"{k}.$": f"$.{k}" for k in keys}


def _channel(name: str, uri: dict, data_type: str) -> dict:
    return {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
        "S3DataType": data_type, "S3DataDistributionType": "FullyReplicated", **uri}}}


def _training_definition(spec: WorkflowSpec, static_hyperparameters: dict[str, str]) -> dict:
    """What CreateTrainingJob and a tuning job's TrainingJobDefinition share."""
    resources = {"InstanceType": spec.instance_type, "InstanceCount": spec.instance_count,
                 "VolumeSizeInGB": spec.volume_gb}
    if not has_local_storage(spec.instance_type):
        resources["VolumeKmsKeyId"] = spec.data_key_arn
    stopping = {"MaxRuntimeInSeconds": spec.max_runtime_s}
    if spec.spot:
        stopping["MaxWaitTimeInSeconds"] = spec.max_wait_s
    return {
        "AlgorithmSpecification": {"TrainingImage": spec.training_image, "TrainingInputMode": "File",
                                   "MetricDefinitions": metric_definitions()},
        "RoleArn": spec.execution_role_arn,
        "StaticHyperParameters": {**static_hyperparameters, "sagemaker_program": "train.py",
                                  "sagemaker_submit_directory": SUBMIT_DIRECTORY},
        "InputDataConfig": [
            _channel("train", {"S3Uri.$": "$.snapshot.train_manifest"}, "ManifestFile"),
            _channel("validation", {"S3Uri.$": "$.snapshot.validation_manifest"}, "ManifestFile"),
            # Network isolation: the training toolkit cannot download the code, so it is a channel.
            _channel("code", {"S3Uri": spec.code_url}, "S3Prefix"),
        ],
        "OutputDataConfig": {"S3OutputPath": spec.models_url, "KmsKeyId": spec.data_key_arn},
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": spec.spot,
        "CheckpointConfig": {"S3Uri.$": "$.snapshot.checkpoint_url", "LocalPath": "/opt/ml/checkpoints"},
        "VpcConfig": {"SecurityGroupIds": list(spec.security_group_ids), "Subnets": list(spec.subnet_ids)},
    }


def training_job_parameters(spec: WorkflowSpec) -> dict:
    shared = _training_definition(spec, spec.hyperparameters)
    params = {"TrainingJobName.$": "$.snapshot.training_job_name",
              "HyperParameters": shared.pop("StaticHyperParameters")}
    params.update(shared)
    return params


def tuning_job_parameters(spec: WorkflowSpec) -> dict:
    static = {k: v for k, v in spec.hyperparameters.items() if k not in spec.tuning_ranges}
    definition = _training_definition(spec, static)
    ranges: dict[str, list] = {"ContinuousParameterRanges": [], "IntegerParameterRanges": [],
                               "CategoricalParameterRanges": []}
    for name, r in sorted(spec.tuning_ranges.items()):
        if r["type"] == "categorical":
            ranges["CategoricalParameterRanges"].append({"Name": name, "Values": [str(v) for v in r["values"]]})
        else:
            kind = "ContinuousParameterRanges" if r["type"] == "continuous" else "IntegerParameterRanges"
            ranges[kind].append({"Name": name, "MinValue": str(r["min"]), "MaxValue": str(r["max"]),
                                 "ScalingType": r.get("scaling", "Auto")})
    return {
        "HyperParameterTuningJobName.$": "$.snapshot.tuning_job_name",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": TUNING_OBJECTIVE},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": spec.tuning_max_jobs,
                               "MaxParallelTrainingJobs": spec.tuning_max_parallel_jobs},
            "ParameterRanges": {k: v for k, v in ranges.items() if v},
            "TrainingJobEarlyStoppingType": "Off",
        },
        "TrainingJobDefinition": definition,
    }


def processing_job_parameters(spec: WorkflowSpec, with_production: bool) -> dict:
    def s3_input(name: str, uri: dict, data_type: str = "S3Prefix") -> dict:
        return {"InputName": name, "S3Input": {**uri, "LocalPath": f"/opt/ml/processing/input/{name}",
                                              "S3DataType": data_type, "S3InputMode": "File",
                                              "S3DataDistributionType": "FullyReplicated"}}
    inputs = [s3_input("candidate", {"S3Uri.$": "$.training.model_data_url"})]
    if with_production:
        inputs.append(s3_input("production", {"S3Uri.$": "$.production.items[0].model_data_url.S"}))
    inputs += [s3_input("test", {"S3Uri.$": "$.snapshot.test_manifest"}, "ManifestFile"),
               s3_input("code", {"S3Uri": spec.code_url})]
    cluster = {"InstanceCount": 1, "InstanceType": spec.evaluation_instance_type,
               "VolumeSizeInGB": spec.evaluation_volume_gb}
    if not has_local_storage(spec.evaluation_instance_type):
        cluster["VolumeKmsKeyId"] = spec.data_key_arn
    return {
        "ProcessingJobName.$": "$.snapshot.processing_job_name",
        "RoleArn": spec.execution_role_arn,
        "AppSpecification": {"ImageUri": spec.evaluation_image, "ContainerEntrypoint": EVALUATION_ENTRYPOINT},
        "ProcessingResources": {"ClusterConfig": cluster},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"KmsKeyId": spec.data_key_arn, "Outputs": [{
            "OutputName": "evaluation", "S3Output": {"S3Uri.$": "$.snapshot.evaluation_prefix",
                                                     "LocalPath": "/opt/ml/processing/output",
                                                     "S3UploadMode": "EndOfJob"}}]},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.evaluation_max_runtime_s},
        "NetworkConfig": {"EnableNetworkIsolation": True, "EnableInterContainerTrafficEncryption": True,
                          "VpcConfig": {"SecurityGroupIds": list(spec.security_group_ids),
                                        "Subnets": list(spec.subnet_ids)}},
    }


# (API action, Describe action, name parameter, status field, success status)
_JOBS = {
    "createTrainingJob": ("describeTrainingJob", "TrainingJobName", "TrainingJobStatus", "Completed"),
    "createHyperParameterTuningJob": ("describeHyperParameterTuningJob", "HyperParameterTuningJobName",
                                      "HyperParameterTuningJobStatus", "Completed"),
    "createProcessingJob": ("describeProcessingJob", "ProcessingJobName", "ProcessingJobStatus", "Completed"),
}


def _sagemaker_job(states: dict, name: str, action: str, parameters: dict, next_state: str, comment: str,
                   request_response: bool) -> None:
    """A job state whose output lands in ``$.described`` as DescribeX's answer, as ``.sync`` returns it."""
    describe, name_param, status_field, success = _JOBS[action]
    if not request_response:
        states[name] = {"Type": "Task", "Comment": comment, "Resource": f"arn:aws:states:::sagemaker:{action}.sync",
                        "Parameters": parameters, "ResultPath": "$.described", "Retry": [SAGEMAKER_RETRY],
                        "Catch": _catch(), "Next": next_state}
        return
    name_path = parameters[f"{name_param}.$"]
    states[name] = {"Type": "Task", "Comment": comment + " (request-response variant)",
                    "Resource": f"arn:aws:states:::sagemaker:{action}", "Parameters": parameters,
                    "ResultPath": None, "Retry": [SAGEMAKER_RETRY], "Catch": _catch(), "Next": f"{name}Describe"}
    states[f"{name}Describe"] = {"Type": "Task", "Resource": f"arn:aws:states:::aws-sdk:sagemaker:{describe}",
                                 "Parameters": {f"{name_param}.$": name_path}, "ResultPath": "$.described",
                                 "Retry": [SAGEMAKER_RETRY], "Catch": _catch(), "Next": f"{name}Status"}
    states[f"{name}Status"] = {"Type": "Choice", "Choices": [
        {"Variable": f"$.described.{status_field}", "StringEquals": success, "Next": next_state}],
        "Default": f"{name}Failed"}
    states[f"{name}Failed"] = {"Type": "Pass", "Parameters": {
        "Error": f"SageMaker.{name}JobFailed", "Cause.$": "$.described.FailureReason"},
        "ResultPath": "$.error", "Next": FAILURE_STATE}


def build(spec: WorkflowSpec, *, request_response: bool = False) -> dict:
    now = {"S.$": "$$.State.EnteredTime"}
    states: dict[str, dict] = {}
    states["Start"] = {"Type": "Pass", "Comment": "Keep the run's input under $.input (e.g. {\"tune\": true})",
                       "Parameters": {"input.$": "$"}, "Next": "Trigger"}
    # Why the run started: the input's "trigger" (the schedule sends "schedule", observability's retrain rule
    # "drift" with the alarm's name, reason and time), "manual" when absent.
    # (And stops at the first false rule, so no test below reads a path that is absent.)
    drift = [{"Variable": "$.input.trigger", "StringEquals": TRIGGER_DRIFT}] + [
        rule for k in DRIFT_FIELDS for rule in ({"Variable": f"$.input.{k}", "IsPresent": True},
                                                {"Variable": f"$.input.{k}", "IsString": True})]
    states["Trigger"] = {"Type": "Choice", "Choices": [
        {"And": [{"Variable": "$.input.trigger", "IsPresent": True}, {"Variable": "$.input.trigger", "IsString": True},
                 *drift], "Next": "TriggerDrift"},
        {"And": [{"Variable": "$.input.trigger", "IsPresent": True}, {"Variable": "$.input.trigger", "IsString": True}],
         "Next": "TriggerGiven"}], "Default": "TriggerManual"}
    states["TriggerDrift"] = {"Type": "Pass", "Parameters": {"input.$": "$.input", "trigger": TRIGGER_DRIFT},
                              "Next": "RecordDriftStart"}
    states["TriggerGiven"] = {"Type": "Pass", "Parameters": {"input.$": "$.input", "trigger.$": "$.input.trigger"},
                              "Next": "RecordStart"}
    states["TriggerManual"] = {"Type": "Pass", "Parameters": {"input.$": "$.input", "trigger": TRIGGER_MANUAL},
                               "Next": "RecordStart"}

    def record_start(extra: dict) -> dict:
        return _dynamodb("putItem", {"TableName": spec.experiments_table, "Item": {
            **_run_key(spec), "status": {"S": "running"}, "started_at": now, "updated_at": now,
            "execution_arn": {"S.$": "$$.Execution.Id"}, "trigger": {"S.$": "$.trigger"},
            "input": {"S.$": "States.JsonToString($.input)"}, **extra}}, "ValidateData",
            "Every run is recorded in the experiments table, whatever its outcome, with what started it")
    states["RecordStart"] = record_start({})
    states["RecordDriftStart"] = record_start({f"drift_{k}": {"S.$": f"$.input.{k}"} for k in DRIFT_FIELDS})
    states["ValidateData"] = _lambda(spec.validate_function_arn, {"run_id.$": "$$.Execution.Name", "input.$": "$.input"},
                                     {"ok": "ok", "reason": "reason", "days": "days", "labelled": "labelled",
                                      "labels": "labels"},
                                     "$.validation", "DataOk", "Enough labelled images, balanced, little quarantine")
    states["DataOk"] = {"Type": "Choice", "Choices": [
        {"Variable": "$.validation.ok", "BooleanEquals": True, "Next": "Snapshot"}], "Default": "RecordDataRejected"}
    states["RecordDataRejected"] = _update_run(spec, {"status": {"S": "data-rejected"},
                                                      "reason": {"S.$": "$.validation.reason"}, "updated_at": now},
                                               "DataRejected", "The reason the data check stopped the run")
    states["DataRejected"] = {"Type": "Fail", "Error": "DataValidationFailed",
                              "Cause": "The training data failed a check; the experiments table holds the reason"}
    states["Snapshot"] = _lambda(spec.snapshot_function_arn,
                                 {"run_id.$": "$$.Execution.Name", "days.$": "$.validation.days",
                                  "labels.$": "$.validation.labels"},
                                 {k: k for k in ("snapshot_id", "snapshot_url", "train_manifest", "validation_manifest",
                                                 "test_manifest", "checkpoint_url", "evaluation_prefix",
                                                 "evaluation_url", "training_job_name", "tuning_job_name",
                                                 "processing_job_name", "shards")},
                                 "$.snapshot", "RecordSnapshot", "Shard list split into train/validation/test by hash")
    states["RecordSnapshot"] = _update_run(spec, {"snapshot_id": {"S.$": "$.snapshot.snapshot_id"},
                                                  "snapshot_url": {"S.$": "$.snapshot.snapshot_url"},
                                                  "label_counts": {"S.$": "States.JsonToString($.validation.labels)"},
                                                  "updated_at": now}, "TuneOrTrain", "The data this run trains on")
    states["TuneOrTrain"] = {"Type": "Choice", "Choices": [{"And": [
        {"Variable": "$.input.tune", "IsPresent": True},
        {"Variable": "$.input.tune", "IsBoolean": True},
        {"Variable": "$.input.tune", "BooleanEquals": True}], "Next": "Tune"}], "Default": "Train"}
    _sagemaker_job(states, "Train", "createTrainingJob", training_job_parameters(spec), "TrainResult",
                   "One training job (managed Spot, checkpoints in S3)", request_response)
    _sagemaker_job(states, "Tune", "createHyperParameterTuningJob", tuning_job_parameters(spec), "DescribeBest",
                   "Hyperparameter tuning on validation:accuracy", request_response)
    states["DescribeBest"] = {"Type": "Task", "Comment": "The tuning job's best training job is the candidate",
                              "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob",
                              "Parameters": {"TrainingJobName.$": "$.described.BestTrainingJob.TrainingJobName"},
                              "ResultPath": "$.described", "Retry": [SAGEMAKER_RETRY], "Catch": _catch(),
                              "Next": "TrainResult"}
    # Rebuilt state (the Describe answer is dropped: it is large and the run's state is capped at 256 KB).
    states["TrainResult"] = {"Type": "Pass", "Parameters": {
        **_carry("input", "validation", "snapshot"),
        "training": {"training_job_name.$": "$.described.TrainingJobName",
                     "model_data_url.$": "$.described.ModelArtifacts.S3ModelArtifacts"}},
        "Next": "FindProduction"}
    states["FindProduction"] = {
        "Type": "Task", "Comment": "The production version, if any, is evaluated on the same test split",
        "Resource": "arn:aws:states:::aws-sdk:dynamodb:query",
        "Parameters": {"TableName": spec.versions_table, "IndexName": "status-index",
                       "KeyConditionExpression": "model_name = :model AND #status = :production",
                       "ExpressionAttributeNames": {"#status": "status"},
                       "ExpressionAttributeValues": {":model": {"S": spec.model_name}, ":production": {"S": "production"}},
                       "Limit": 1},
        "ResultSelector": {"count.$": "$.Count", "items.$": "$.Items"}, "ResultPath": "$.production",
        # AWS SDK integrations name errors after the SDK's service id (DynamoDb.*), not DynamoDB.*.
        "Retry": [{**DYNAMODB_RETRY, "ErrorEquals": [
            "DynamoDb.DynamoDbException", "DynamoDb.ProvisionedThroughputExceededException",
            "DynamoDb.ThrottlingException", "DynamoDb.InternalServerErrorException",
            "DynamoDb.RequestLimitExceededException"]}],
        "Catch": _catch(), "Next": "HasProduction"}
    states["HasProduction"] = {"Type": "Choice", "Choices": [
        {"Variable": "$.production.count", "NumericGreaterThan": 0, "Next": "EvaluateAgainstProduction"}],
        "Default": "EvaluateFirstModel"}
    _sagemaker_job(states, "EvaluateAgainstProduction", "createProcessingJob", processing_job_parameters(spec, True),
                   "Evaluated", "Candidate and production scored on the same test split", request_response)
    _sagemaker_job(states, "EvaluateFirstModel", "createProcessingJob", processing_job_parameters(spec, False),
                   "Evaluated", "No production model yet: the candidate alone", request_response)
    states["Evaluated"] = {"Type": "Pass", "Parameters": _carry("input", "validation", "snapshot", "training"),
                           "Next": "Decide"}
    states["Decide"] = _lambda(spec.decide_function_arn, {"evaluation_url.$": "$.snapshot.evaluation_url"},
                               {k: k for k in ("approved", "status", "reason", "candidate_accuracy",
                                               "production_accuracy")},
                               "$.decision", "PublishMetrics", "Threshold, and tolerance against production")
    # Before anything is registered: a run that fails here leaves no half-recorded version behind.
    states["PublishMetrics"] = _lambda(spec.metrics_function_arn, {
        "training_job_name.$": "$.training.training_job_name",
        "candidate_accuracy.$": "$.decision.candidate_accuracy"}, {"values": "published"},
        "$.published", "Register", "ModelAccuracy, TrainingDurationSeconds, SpotSavingsPercent (dimension ModelName)")
    states["Register"] = _lambda(spec.register_function_arn, {
        "run_id.$": "$$.Execution.Name", "training_job_name.$": "$.training.training_job_name",
        "model_data_url.$": "$.training.model_data_url", "snapshot_id.$": "$.snapshot.snapshot_id",
        "evaluation_url.$": "$.snapshot.evaluation_url", "decision.$": "$.decision"},
        {k: k for k in ("version", "status", "model_package_arn", "model_data_url", "image_uri", "metrics")},
        "$.registered", "RecordOutcome", "Model package and model-version item")
    states["RecordOutcome"] = _update_run(spec, {
        "status": {"S.$": "$.registered.status"}, "model_version": {"N.$": "States.Format('{}', $.registered.version)"},
        "model_package_arn": {"S.$": "$.registered.model_package_arn"},
        "training_job_name": {"S.$": "$.training.training_job_name"},
        "metrics": {"S.$": "States.JsonToString($.registered.metrics)"},
        "decision_reason": {"S.$": "$.decision.reason"}, "updated_at": now, "finished_at": now},
        "Approved", "Outcome, version and training metrics")
    approved_next = "StartDeployment" if spec.deployment_state_machine_arn else "ApprovedEnd"
    states["Approved"] = {"Type": "Choice", "Choices": [
        {"Variable": "$.decision.approved", "BooleanEquals": True, "Next": approved_next}], "Default": "RejectedEnd"}
    if spec.deployment_state_machine_arn:
        states["StartDeployment"] = {
            "Type": "Task", "Comment": "Hand the approved version to the deployment workflow",
            "Resource": "arn:aws:states:::states:startExecution",
            # Named after the training run: a retried start is idempotent (same name, same input).
            "Parameters": {"StateMachineArn": spec.deployment_state_machine_arn, "Name.$": "$$.Execution.Name", "Input": {
                "model_name": spec.model_name, "version.$": "$.registered.version",
                "model_package_arn.$": "$.registered.model_package_arn",
                "model_data_url.$": "$.registered.model_data_url", "image_uri.$": "$.registered.image_uri",
                "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id"}},
            "ResultPath": None, "Retry": [STATES_RETRY], "Catch": _catch(), "Next": "ApprovedEnd"}
    states["ApprovedEnd"] = {"Type": "Succeed", "Comment": "Approved (and handed over when a deployment workflow is set)"}
    states["RejectedEnd"] = {"Type": "Succeed", "Comment": "Registered as rejected; production untouched"}

    # The catch-all path: record, notify, fail. Production is never touched on the way.
    states[FAILURE_STATE] = _update_run(spec, {"status": {"S": "failed"},
                                               "error": {"S.$": "States.JsonToString($.error)"}, "updated_at": now,
                                               "finished_at": now}, "NotifyFailure",
                                        "Record why the run failed", catch=False)
    states[FAILURE_STATE]["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error",
                                       "Next": "NotifyFailure"}]
    states["NotifyFailure"] = {
        "Type": "Task", "Comment": "Tell the alarm topic", "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {"TopicArn": spec.alarm_topic_arn, "Subject": f"Training run failed: {spec.model_name}"[:100],
                       "Message.$": "States.Format('Run {} of {} failed: {}', $$.Execution.Name, '"
                                    + spec.model_name + "', States.JsonToString($.error))"},
        "ResultPath": None, "Retry": [SNS_RETRY],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error", "Next": "RunFailed"}],
        "Next": "RunFailed"}
    states["RunFailed"] = {"Type": "Fail", "Error": "TrainingRunFailed",
                           "Cause": "A step failed; see the experiments table and the execution history"}
    return {"Comment": f"Training workflow of {spec.model_name}: validate, snapshot, train or tune, evaluate, "
                       "decide, register, hand over", "StartAt": "Start", "TimeoutSeconds": run_timeout(spec),
            "States": states}


def run_timeout(spec: WorkflowSpec) -> int:
    """The longest a run may take: the tuning job's rounds at full Spot wait, the evaluation, an hour slack.
    A run past it times out (and alarms) instead of holding a stale "running" record for a year."""
    rounds = -(-spec.tuning_max_jobs // spec.tuning_max_parallel_jobs)
    job = spec.max_wait_s if spec.spot else spec.max_runtime_s
    return rounds * job + spec.evaluation_max_runtime_s + 3600
