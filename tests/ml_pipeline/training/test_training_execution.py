"""The workflow executed by moto's Step Functions: the request-response variant of the same builder, with
the real validate/snapshot/decide/register functions answering the Lambda tasks against moto.

GIVEN a day window of statistics and shards, a production version (or none) and an evaluation report
WHEN a run starts THEN it ends in the expected state with the expected records, and production is untouched.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.sagemaker import models as sagemaker_models

from ml_pipeline.observability.drift import RETRAIN_INPUT_TEMPLATE
from ml_pipeline.training import definition
from training_support import ARTIFACTS, CATALOG, EXPERIMENTS, JOB_PREFIX, MODEL, PROCESSED, VERSIONS, sample_spec

DAYS = ("2026-11-26", "2026-11-27", "2026-11-28")
END = {"end_date": DAYS[-1]}
PRODUCTION_URL = f"s3://{ARTIFACTS}/training/models/old-job/output/model.tar.gz"


_PARSED: dict[str, Any] = {}
_MACHINES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def parse_once():
    """moto parses a definition with its ANTLR grammar at create and again at every start (about a second
    each for this one, on this machine); executions here run one at a time, so the parse is shared."""
    original = AmazonStateLanguageParser.parse

    def parse(definition_text):
        if definition_text not in _PARSED:
            _PARSED[definition_text] = original(definition_text)
        return _PARSED[definition_text]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AmazonStateLanguageParser, "parse", staticmethod(parse))
        yield


@pytest.fixture(scope="module", autouse=True)
def start_execution_camel_case():
    """moto 5.2.5 hands a startExecution task's PascalCase parameters to boto3, which wants camelCase
    (KeyError 'StateMachineArn'); Step Functions maps them. Map them as it does."""
    original = StateTaskServiceSfn._eval_service_task

    def camel_case(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        params = {k[0].lower() + k[1:]: v for k, v in normalised_parameters.items()}
        return original(self, env, resource_runtime_part, params, state_credentials)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StateTaskServiceSfn, "_eval_service_task", camel_case)
        yield


@pytest.fixture(scope="module")
def deploy_machine(world) -> str:
    """A stand-in for the serving issue's deployment workflow: every run's definition hands over to it
    (one definition for all runs: moto's parse of it is the slow part)."""
    return world.sfn.create_state_machine(
        name="deploy", roleArn="arn:aws:iam::123456789012:role/workflow",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]


@pytest.fixture
def run_functions(functions, clean_world, deploy_machine, monkeypatch):
    """Lambda tasks answered by the functions' own handlers (moto's simple backend only echoes)."""
    calls: list[str] = []

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        name = function_name.split(":")[-1].removeprefix("training-").replace("-", "_")
        calls.append(name)
        try:
            return json.dumps(functions[name].handler(json.loads(body), None)).encode()
        except Exception as exc:  # reported the way Lambda reports an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    return calls


def _seed(world, *, labelled_per_day: int = 100, rejected_per_day: int = 5, shards: int = 40,
          production: bool = True, candidate: float = 0.9, production_accuracy: float = 0.85) -> None:
    for day in DAYS:
        world.ddb.put_item(TableName=CATALOG, Item={
            "partition_date": {"S": f"stats#{day}"}, "image_id": {"S": "#totals"},
            "accepted": {"N": str(labelled_per_day + 10)}, "rejected": {"N": str(rejected_per_day)},
            "unlabelled": {"N": "10"}, "label:cat": {"N": str(labelled_per_day // 2)},
            "label:dog": {"N": str(labelled_per_day - labelled_per_day // 2)}})
        for n in range(shards // len(DAYS) + 1):
            world.s3.put_object(Bucket=PROCESSED, Key=f"shards/{day.replace('-', '/')}/shard-{n:03d}.tar", Body=b"tar")
    if production:
        world.ddb.put_item(TableName=VERSIONS, Item={
            "model_name": {"S": MODEL}, "version": {"N": "1"}, "status": {"S": "production"},
            "model_data_url": {"S": PRODUCTION_URL}})
    report = {"candidate": {"accuracy": candidate, "per_class": {}, "confusion_matrix": [], "labels": ["cat", "dog"]},
              "production": {"accuracy": production_accuracy} if production else None, "test_images": 40}
    world.report = json.dumps(report).encode()


def _run(world, functions, name: str, run_input: dict[str, Any]) -> dict:
    names = functions["snapshot"].job_names(JOB_PREFIX, name)
    # The Processing job does not run in moto: its report is put where the job would write it.
    world.s3.put_object(Bucket=ARTIFACTS, Key=f"training/evaluations/{names['processing_job_name']}/evaluation.json",
                        Body=world.report)
    deploy = world.sfn.list_state_machines()["stateMachines"]
    spec = sample_spec(deployment_state_machine_arn=next(m["stateMachineArn"] for m in deploy if m["name"] == "deploy"))
    text = json.dumps(definition.build(spec, request_response=True))
    if text not in _MACHINES:
        _MACHINES[text] = world.sfn.create_state_machine(
            name=f"training-{len(_MACHINES)}", roleArn="arn:aws:iam::123456789012:role/workflow",
            definition=text)["stateMachineArn"]
    machine = _MACHINES[text]
    arn = world.sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(run_input))["executionArn"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        described = world.sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.02)
    history = world.sfn.get_execution_history(executionArn=arn)["events"]
    described["states"] = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    described["failed_details"] = [e.get("executionFailedEventDetails") for e in history
                                   if e["type"] == "ExecutionFailed"]
    return described


def _create_once(create, **request) -> None:
    try:
        create(**request)
    except Exception as exc:  # the module's moto account already has it
        assert "already" in str(exc).lower() or "exist" in str(exc).lower(), exc


def _run_item(world, name: str) -> dict:
    item = world.ddb.get_item(TableName=EXPERIMENTS, Key={"experiment_id": {"S": MODEL}, "run_id": {"S": name}})["Item"]
    return {k: list(v.values())[0] for k, v in item.items()}


def _versions(world) -> dict[int, dict]:
    items = world.ddb.scan(TableName=VERSIONS)["Items"]
    return {int(i["version"]["N"]): {k: list(v.values())[0] for k, v in i.items()} for i in items}


def _alarms(world) -> list[str]:
    messages = world.sqs.receive_message(QueueUrl=world.alarm_queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def test_a_better_model_is_approved_and_registered_beside_production(world, functions, run_functions, monkeypatch):
    original = sagemaker_models.FakeTrainingJob.__init__

    def spot_job(self, *args, **kwargs):   # moto reports no times: the ones SageMaker gives a Spot job
        original(self, *args, **kwargs)
        self.training_time_in_seconds, self.billable_time_in_seconds = 1800, 600

    monkeypatch.setattr(sagemaker_models.FakeTrainingJob, "__init__", spot_job)
    _seed(world, candidate=0.9, production_accuracy=0.85)
    result = _run(world, functions, "better-run", END)
    assert result["status"] == "SUCCEEDED", result["states"][-4:]
    assert "EvaluateAgainstProduction" in result["states"] and result["states"][-2:] == ["StartDeployment", "ApprovedEnd"]
    assert run_functions == ["validate", "snapshot", "decide", "metrics", "register"]
    # The dashboards' custom metrics, for the candidate the run evaluated (before it is registered).
    assert json.loads(result["output"])["published"]["values"] == {
        "ModelAccuracy": 0.9, "TrainingDurationSeconds": 1800.0, "SpotSavingsPercent": 66.67}
    versions = _versions(world)
    assert versions[1]["status"] == "production"                     # untouched: serving promotes
    new = max(versions)
    assert versions[new]["status"] == "approved" and versions[new]["training_job_name"].startswith(f"{JOB_PREFIX}-better-run-")
    assert versions[new]["model_data_url"].endswith("/output/model.tar.gz")
    run = _run_item(world, "better-run")
    assert run["trigger"] == "manual" and "drift_alarm_name" not in run     # no trigger in the input
    assert run["status"] == "approved" and run["model_version"] == str(new) and run["snapshot_id"].startswith(DAYS[-1])
    assert json.loads(run["label_counts"]) == {"cat": 150, "dog": 150}
    package = world.sagemaker.describe_model_package(ModelPackageName=versions[new]["model_package_arn"])
    assert package["ModelApprovalStatus"] == "Approved"
    assert _alarms(world) == []


def test_a_worse_model_is_registered_as_rejected(world, functions, run_functions):
    _seed(world, candidate=0.82, production_accuracy=0.9)
    result = _run(world, functions, "worse-run", END)
    assert result["status"] == "SUCCEEDED" and result["states"][-1] == "RejectedEnd"
    assert "StartDeployment" not in result["states"]
    versions = _versions(world)
    assert versions[1]["status"] == "production"
    rejected = [v for v in versions.values() if v["status"] == "rejected"]
    assert len(rejected) == 1 and "worse than production" in rejected[0]["decision_reason"]
    assert _run_item(world, "worse-run")["status"] == "rejected"


def test_the_first_model_needs_only_the_threshold(world, functions, run_functions):
    _seed(world, production=False, candidate=0.81)
    result = _run(world, functions, "first-run", END)
    assert result["status"] == "SUCCEEDED" and result["states"][-1] == "ApprovedEnd"
    assert "EvaluateFirstModel" in result["states"] and "EvaluateAgainstProduction" not in result["states"]
    assert [v["status"] for v in _versions(world).values()] == ["approved"]


def test_too_few_images_stop_the_run_with_the_reason_recorded(world, functions, run_functions):
    _seed(world, labelled_per_day=20)
    result = _run(world, functions, "small-run", END)
    assert result["status"] == "FAILED" and result["failed_details"][0]["error"] == "DataValidationFailed"
    assert run_functions == ["validate"]
    run = _run_item(world, "small-run")
    assert run["status"] == "data-rejected" and "60 labelled images" in run["reason"]
    assert list(_versions(world)) == [1]


def test_a_run_started_by_the_drift_alarm_is_recorded_as_such(world, functions, run_functions):
    # What observability's retrain rule sends (RETRAIN_INPUT_TEMPLATE filled by EventBridge).
    drift = json.loads(RETRAIN_INPUT_TEMPLATE.replace("<alarm>", '"ml-pipeline-test-drift"').replace(
        "<reason>", '"Threshold Crossed: 1 datapoint [0.41] was greater than the threshold (0.25)."').replace(
        "<time>", '"2026-11-29T09:00:00Z"'))
    result = _run(world, functions, "drift-run", drift)       # no statistics yet: the data check stops it
    assert result["states"][:4] == ["Start", "Trigger", "TriggerDrift", "RecordDriftStart"]
    assert result["failed_details"][0]["error"] == "DataValidationFailed" and run_functions == ["validate"]
    run = _run_item(world, "drift-run")
    assert run["trigger"] == "drift" and run["drift_alarm_name"] == "ml-pipeline-test-drift"
    assert run["drift_detected_at"] == "2026-11-29T09:00:00Z" and run["drift_reason"].startswith("Threshold Crossed")
    assert json.loads(run["input"]) == drift and run["status"] == "data-rejected"
    # A drift input without the alarm's details still runs, recorded with the trigger it names.
    partial = _run(world, functions, "drift-run-2", {"trigger": "drift", "alarm_name": "a"})
    assert partial["states"][:4] == ["Start", "Trigger", "TriggerGiven", "RecordStart"]
    run = _run_item(world, "drift-run-2")
    assert run["trigger"] == "drift" and "drift_alarm_name" not in run


def test_a_failed_training_job_is_recorded_alarmed_and_leaves_production_alone(world, functions, run_functions,
                                                                               monkeypatch):
    original = sagemaker_models.FakeTrainingJob.__init__

    def failing(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.training_job_status, self.failure_reason = "Failed", "AlgorithmError: CUDA out of memory"

    monkeypatch.setattr(sagemaker_models.FakeTrainingJob, "__init__", failing)
    _seed(world)
    result = _run(world, functions, "failing-run", END)
    assert result["status"] == "FAILED" and result["failed_details"][0]["error"] == "TrainingRunFailed"
    assert result["states"][-3:] == ["RecordFailure", "NotifyFailure", "RunFailed"]
    run = _run_item(world, "failing-run")
    assert run["status"] == "failed" and "CUDA out of memory" in run["error"]
    alarms = _alarms(world)
    assert len(alarms) == 1 and "failing-run" in alarms[0] and "CUDA out of memory" in alarms[0]
    assert _versions(world) == {1: {"model_name": MODEL, "version": "1", "status": "production",
                                    "model_data_url": PRODUCTION_URL}}


def test_a_tuning_run_registers_the_best_training_job(world, functions, run_functions):
    _seed(world)
    # moto's tuning job always names its best job "FakeTrainingJobName": that job is the tuning's outcome here.
    _create_once(world.sagemaker.create_training_job,
        TrainingJobName="FakeTrainingJobName", RoleArn="arn:aws:iam::123456789012:role/sagemaker-execution",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{ARTIFACTS}/training/models/"},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})
    result = _run(world, functions, "tuning-run", {"tune": True, **END})
    assert result["status"] == "SUCCEEDED", result["states"][-4:]
    assert {"Tune", "TuneDescribe", "DescribeBest"} <= set(result["states"]) and "Train" not in result["states"]
    approved = [v for v in _versions(world).values() if v["status"] == "approved"]
    assert approved[0]["training_job_name"] == "FakeTrainingJobName"
    tuning = world.sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert len(tuning) == 1 and len(tuning[0]["HyperParameterTuningJobName"]) <= 32


def test_an_approved_version_starts_the_deployment_workflow(world, functions, run_functions, deploy_machine):
    _seed(world)
    before = len(world.sfn.list_executions(stateMachineArn=deploy_machine)["executions"])
    result = _run(world, functions, "handover-run", END)
    assert result["status"] == "SUCCEEDED" and result["states"][-2:] == ["StartDeployment", "ApprovedEnd"]
    started = world.sfn.list_executions(stateMachineArn=deploy_machine)["executions"]
    assert len(started) == before + 1
    mine = next(e for e in started if e["name"] == "handover-run")
    handed = json.loads(world.sfn.describe_execution(executionArn=mine["executionArn"])["input"])
    assert handed["model_name"] == MODEL and handed["version"] == 2 and handed["model_package_arn"]
