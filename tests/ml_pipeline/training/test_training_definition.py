"""The workflow definition as data: statelint, reachability, and every SageMaker and DynamoDB task's
Parameters checked against botocore's request shapes (required and unknown keys, types, enums, patterns,
lengths and ranges), with the run's dynamic values filled in from what the functions really produce."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterator

import pytest
from botocore.validate import ParamValidator
from statelint.linter import Linter

from ml_pipeline.training import definition
from training_support import ARTIFACTS, JOB_PREFIX, load_function, sample_spec
from tests.botocore_models import service_model

DEPLOY_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:ml-pipeline-dev-deploy"
VARIANTS = {
    "sync": dict(request_response=False, spec=sample_spec()),
    "sync-with-handover": dict(request_response=False, spec=sample_spec(deployment_state_machine_arn=DEPLOY_ARN)),
    "request-response": dict(request_response=True, spec=sample_spec()),
    "cpu-no-spot": dict(request_response=False, spec=sample_spec(instance_type="ml.m5.2xlarge", spot=False)),
}
# The longest execution name Step Functions allows (80 characters, any of letters, digits, - and _):
# the job names derived from it must still fit SageMaker's limits.
LONGEST_RUN = "Manual_Run_" + "x" * 58 + "_2026-11-29"


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def built(request) -> tuple[str, dict]:
    variant = VARIANTS[request.param]
    return request.param, definition.build(variant["spec"], request_response=variant["request_response"])


def test_statelint_accepts_every_variant(built):
    name, body = built
    assert Linter.validate(body) == [], name


def _successors(state: dict) -> list[str]:
    nxt = [state["Next"]] if "Next" in state else []
    nxt += [c["Next"] for c in state.get("Choices", [])]
    nxt += [state["Default"]] if "Default" in state else []
    nxt += [c["Next"] for c in state.get("Catch", [])]
    return nxt


def test_every_state_is_reachable_and_every_path_ends(built):
    name, body = built
    states = body["States"]
    seen, todo = set(), [body["StartAt"]]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += _successors(states[current])
    assert seen == set(states), f"{name}: unreachable {set(states) - seen}"
    terminal = {n for n, s in states.items() if s["Type"] in ("Succeed", "Fail") or s.get("End")}
    ends = set(terminal)
    changed = True
    while changed:  # states from which some terminal state is reachable
        changed = False
        for n, s in states.items():
            if n not in ends and any(x in ends for x in _successors(s)):
                ends.add(n)
                changed = True
    assert ends == set(states), f"{name}: no way out of {set(states) - ends}"
    for n, s in states.items():
        if s["Type"] not in ("Succeed", "Fail", "Choice"):
            assert ("Next" in s) != bool(s.get("End")), f"{name}: {n} needs exactly one of Next and End"


def test_every_task_retries_and_falls_into_the_failure_path(built):
    name, body = built
    for n, s in body["States"].items():
        if s["Type"] != "Task":
            continue
        assert s.get("Retry") and all(r["BackoffRate"] >= 2 and r["MaxAttempts"] >= 3 for r in s["Retry"]), n
        catch_to = {c["Next"] for c in s["Catch"]}
        assert any("States.ALL" in c["ErrorEquals"] for c in s["Catch"]), n
        if n not in ("RecordFailure", "NotifyFailure"):
            assert catch_to == {definition.FAILURE_STATE}, n


def test_the_request_response_variant_differs_only_in_the_sagemaker_waits():
    sync = definition.build(sample_spec())
    rr = definition.build(sample_spec(), request_response=True)
    added = set(rr["States"]) - set(sync["States"])
    assert set(sync["States"]) <= set(rr["States"])
    assert added == {f"{job}{suffix}" for job in ("Train", "Tune", "EvaluateAgainstProduction", "EvaluateFirstModel")
                     for suffix in ("Describe", "Status", "Failed")}
    for name, state in sync["States"].items():
        other = rr["States"][name]
        if state.get("Resource", "").endswith(".sync"):
            assert other["Resource"] == state["Resource"].removesuffix(".sync")
            assert other["Parameters"] == state["Parameters"]
        else:
            assert other == state, name


# -- Parameters against botocore ---------------------------------------------------------------
@lru_cache(maxsize=None)
def _model(service: str):
    return service_model(service)


def _operation(resource: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"arn:aws:states:::(?:aws-sdk:)?(sagemaker|dynamodb):(\w+?)(\.sync)?", resource)
    if not match:
        return None
    action = match.group(2)
    return match.group(1), action[0].upper() + action[1:]


def _samples() -> dict[str, Any]:
    """What each JSONPath of the definition holds at run time, from the snapshot function's own naming."""
    names = load_function("snapshot").job_names(JOB_PREFIX, LONGEST_RUN)
    base = f"s3://{ARTIFACTS}/snapshots/2026-11-28-0123456789ab/"
    return {
        "$.snapshot.training_job_name": names["training_job_name"],
        "$.snapshot.tuning_job_name": names["tuning_job_name"],
        "$.snapshot.processing_job_name": names["processing_job_name"],
        "$.snapshot.train_manifest": base + "train.manifest",
        "$.snapshot.validation_manifest": base + "validation.manifest",
        "$.snapshot.test_manifest": base + "test.manifest",
        "$.snapshot.checkpoint_url": f"s3://{ARTIFACTS}/training/checkpoints/{names['training_job_name']}/",
        "$.snapshot.evaluation_prefix": f"s3://{ARTIFACTS}/training/evaluations/{names['processing_job_name']}/",
        "$.training.model_data_url": f"s3://{ARTIFACTS}/training/models/{names['training_job_name']}/output/model.tar.gz",
        "$.production.items[0].model_data_url.S": f"s3://{ARTIFACTS}/training/models/old/output/model.tar.gz",
        "$.described.BestTrainingJob.TrainingJobName": names["tuning_job_name"] + "-003-0a1b2c3d",
    }


def _fill(value: Any, samples: dict[str, Any], where: str) -> Any:
    if isinstance(value, list):
        return [_fill(v, samples, where) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, inner in value.items():
        if key.endswith(".$"):
            key = key[:-2]
            if inner.startswith("States."):          # an intrinsic function: a string result
                inner = "3" if key == "N" else "sample text"
            elif key in ("S", "N"):                  # a DynamoDB attribute value
                inner = "3" if key == "N" else "sample text"
            else:
                assert inner in samples, f"{where}: no sample for {inner}"
                inner = samples[inner]
        out[key] = _fill(inner, samples, where)
    return out


def _problems(value: Any, shape, path: str) -> Iterator[str]:
    """What ParamValidator leaves out: enums, patterns, maximums."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure" and isinstance(value, dict):
        for key, inner in value.items():
            if key in shape.members:
                yield from _problems(inner, shape.members[key], f"{path}.{key}")
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} items, max {meta['max']}"
        for i, inner in enumerate(value):
            yield from _problems(inner, shape.member, f"{path}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} entries, max {meta['max']}"
        for key, inner in value.items():
            yield from _problems(key, shape.key, f"{path} key {key}")
            yield from _problems(inner, shape.value, f"{path}.{key}")
    elif kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            yield f"{path}: {value!r} is not one of {shape.name}'s values"
        if "max" in meta and len(value) > meta["max"]:
            yield f"{path}: {len(value)} characters, max {meta['max']}"
        pattern = meta.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                compiled = None   # Java-only syntax (\p{...}); the type and length checks still apply
            if compiled and not compiled.search(value):
                yield f"{path}: {value!r} does not match {pattern}"
    elif kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "max" in meta and value > meta["max"]:
            yield f"{path}: {value} over the maximum {meta['max']}"


def _api_tasks(body: dict) -> Iterator[tuple[str, str, str, dict]]:
    for name, state in body["States"].items():
        if state["Type"] == "Task":
            op = _operation(state["Resource"])
            if op:
                yield name, op[0], op[1], state["Parameters"]


def test_every_sagemaker_and_dynamodb_task_is_a_valid_request(built):
    variant, body = built
    samples = _samples()
    checked = []
    for name, service, operation, parameters in _api_tasks(body):
        request = _fill(parameters, samples, name)
        shape = _model(service).operation_model(operation).input_shape
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), f"{variant}:{name}: {report.generate_report()}"
        problems = list(_problems(request, shape, name))
        assert problems == [], f"{variant}:{name}: {problems}"
        checked.append(operation)
    expected = {"PutItem", "UpdateItem", "Query", "CreateTrainingJob", "CreateHyperParameterTuningJob",
                "CreateProcessingJob", "DescribeTrainingJob"}
    assert expected <= set(checked), f"{variant}: only {sorted(set(checked))}"


def test_the_enum_walk_catches_what_the_validator_does_not():
    shape = _model("sagemaker").operation_model("CreateTrainingJob").input_shape
    body = definition.build(sample_spec())
    request = _fill(body["States"]["Train"]["Parameters"], _samples(), "Train")
    request["ResourceConfig"]["InstanceType"] = "ml.g5.xlargee"
    request["AlgorithmSpecification"]["TrainingInputMode"] = "Files"
    request["TrainingJobName"] = "x" * 64
    assert not ParamValidator().validate(request, shape).has_errors()
    problems = " ".join(_problems(request, shape, "Train"))
    assert "ml.g5.xlargee" in problems and "'Files'" in problems and "64 characters" in problems


def test_spot_training_waits_at_least_as_long_as_it_runs_and_checkpoints_to_s3():
    params = definition.build(sample_spec())["States"]["Train"]["Parameters"]
    stop = params["StoppingCondition"]
    assert params["EnableManagedSpotTraining"] is True and stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    assert params["CheckpointConfig"] == {"S3Uri.$": "$.snapshot.checkpoint_url", "LocalPath": "/opt/ml/checkpoints"}
    assert params["EnableNetworkIsolation"] is True and params["EnableInterContainerTrafficEncryption"] is True
    assert params["HyperParameters"]["sagemaker_submit_directory"] == "/opt/ml/input/data/code/sourcedir.tar.gz"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in params["InputDataConfig"]}
    assert channels["code"]["S3Uri"].endswith("/sourcedir.tar.gz") and channels["train"]["S3DataType"] == "ManifestFile"
    no_spot = definition.build(sample_spec(spot=False))["States"]["Train"]["Parameters"]
    assert "MaxWaitTimeInSeconds" not in no_spot["StoppingCondition"]


@pytest.mark.parametrize("instance_type, encrypted", [("ml.g5.xlarge", False), ("ml.p3.2xlarge", True),
                                                      ("ml.m5.xlarge", True), ("ml.m5d.xlarge", False),
                                                      ("ml.g4dn.xlarge", False), ("ml.c5.2xlarge", True)])
def test_volume_keys_only_where_sagemaker_accepts_them(instance_type, encrypted):
    params = definition.build(sample_spec(instance_type=instance_type))["States"]["Train"]["Parameters"]
    assert ("VolumeKmsKeyId" in params["ResourceConfig"]) is encrypted
    assert params["OutputDataConfig"]["KmsKeyId"] == sample_spec().data_key_arn


def test_tuning_maximizes_validation_accuracy_over_the_configured_ranges():
    params = definition.build(sample_spec())["States"]["Tune"]["Parameters"]
    config = params["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [{"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1",
                                                    "ScalingType": "Logarithmic"}]
    assert ranges["IntegerParameterRanges"][0]["Name"] == "epochs"
    static = params["TrainingJobDefinition"]["StaticHyperParameters"]
    assert not {"learning_rate", "batch_size", "epochs"} & set(static) and static["architecture"] == "small"
    definitions = params["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    assert {"Name": "validation:accuracy", "Regex": "METRIC validation:accuracy=([0-9.eE+-]+)"} in definitions
    assert re.search(definitions[3]["Regex"], "METRIC validation:accuracy=0.875").group(1) == "0.875"


def test_evaluation_scores_production_only_when_there_is_one():
    states = definition.build(sample_spec())["States"]
    inputs = {i["InputName"]: i["S3Input"] for i in states["EvaluateAgainstProduction"]["Parameters"]["ProcessingInputs"]}
    assert set(inputs) == {"candidate", "production", "test", "code"}
    assert inputs["production"]["LocalPath"] == "/opt/ml/processing/input/production"
    first = {i["InputName"] for i in states["EvaluateFirstModel"]["Parameters"]["ProcessingInputs"]}
    assert first == {"candidate", "test", "code"}
    assert states["HasProduction"]["Choices"][0]["Next"] == "EvaluateAgainstProduction"


def test_without_a_deployment_workflow_the_run_ends_at_approved():
    states = definition.build(sample_spec())["States"]
    assert "StartDeployment" not in states and states["Approved"]["Choices"][0]["Next"] == "ApprovedEnd"
    handover = definition.build(sample_spec(deployment_state_machine_arn=DEPLOY_ARN))["States"]["StartDeployment"]
    assert handover["Resource"] == "arn:aws:states:::states:startExecution"
    assert handover["Parameters"]["StateMachineArn"] == DEPLOY_ARN


def test_the_definition_is_json_text_as_step_functions_reads_it():
    text = json.dumps(definition.build(sample_spec()))
    assert json.loads(text)["StartAt"] == "Start" and len(text) < 1024 * 1024
