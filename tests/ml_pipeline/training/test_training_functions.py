"""The workflow's functions against moto: data check, snapshot, decision, registration, metrics, job events.

GIVEN statistics items, shards, reports or job events in moto WHEN a handler runs THEN its answer and
what it wrote are what the workflow and contracts 3, 4 and 7 expect.
"""
from __future__ import annotations

import json

import boto3
import pytest
from moto.sagemaker import models as sagemaker_models

from ml_pipeline import metric_names as project_names
from training_support import ARTIFACTS, CATALOG, GROUP, MODEL, NAMESPACE, PROCESSED, REGION, VERSIONS

DAY = "2026-11-28"


def _stats(world, day: str, **counts: int) -> None:
    item = {"partition_date": {"S": f"stats#{day}"}, "image_id": {"S": "#totals"}}
    item.update({k.replace("label_", "label:"): {"N": str(v)} for k, v in counts.items()})
    world.ddb.put_item(TableName=CATALOG, Item=item)


# -- validate ------------------------------------------------------------------------------------
def test_validate_sums_the_window_and_passes_balanced_data(clean_world, functions):
    _stats(clean_world, "2026-11-26", accepted=70, rejected=3, unlabelled=10, label_cat=30, label_dog=30)
    _stats(clean_world, "2026-11-28", accepted=65, rejected=2, label_cat=25, label_dog=25, label_fox=15)
    _stats(clean_world, "2026-11-25", accepted=999, label_cat=999)          # outside the 3-day window
    result = functions["validate"].handler({"run_id": "r", "input": {"end_date": DAY}}, None)
    assert result["ok"] is True and result["days"] == ["2026-11-26", "2026-11-27", DAY]
    assert result["labels"] == {"cat": 55, "dog": 55, "fox": 15} and result["labelled"] == 125
    assert result["accepted"] == 135 and result["rejected"] == 5 and result["unlabelled"] == 10


@pytest.mark.parametrize("counts, reason", [
    (dict(accepted=50, label_cat=25, label_dog=25), "50 labelled images in the window, fewer than the 100"),
    (dict(accepted=200, label_cat=200), "only 1 class"),
    (dict(accepted=200, label_cat=185, label_dog=15), "class 'dog' holds 7.50%"),
    (dict(accepted=200, rejected=60, label_cat=100, label_dog=100), "quarantine rate 23.08% is over the 20.00%"),
])
def test_validate_names_the_check_that_failed(clean_world, functions, counts, reason):
    _stats(clean_world, DAY, **counts)
    result = functions["validate"].handler({"run_id": "r", "input": {"end_date": DAY}}, None)
    assert result["ok"] is False and reason in result["reason"]


def test_validate_with_no_statistics_at_all_fails_cleanly(clean_world, functions):
    result = functions["validate"].handler({"run_id": "r", "input": {}}, None)
    assert result["ok"] is False and result["labelled"] == 0 and len(result["days"]) == 3


# -- snapshot ------------------------------------------------------------------------------------
def _shards(world, count: int, day: str = DAY) -> list[str]:
    keys = [f"shards/{day.replace('-', '/')}/{n:04d}abc.tar" for n in range(count)]
    for key in keys:
        world.s3.put_object(Bucket=PROCESSED, Key=key, Body=b"t")
    world.s3.put_object(Bucket=PROCESSED, Key=f"shards/{day.replace('-', '/')}/notes.txt", Body=b"x")
    return keys


def test_snapshot_splits_by_hash_writes_manifests_and_names_the_jobs(clean_world, functions):
    keys = _shards(clean_world, 60)
    event = {"run_id": "2f1c0a9e-6b7d-4c1e-9a51-0f3d2b7e8c10", "days": ["2026-11-27", DAY], "labels": {"cat": 5}}
    result = functions["snapshot"].handler(event, None)
    again = functions["snapshot"].handler(event, None)
    assert result == again                                                 # deterministic
    manifests = {}
    for split in ("train", "validation", "test"):
        url = result[f"{split}_manifest"]
        body = json.loads(clean_world.s3.get_object(Bucket=ARTIFACTS, Key=url.split(f"{ARTIFACTS}/")[1])["Body"].read())
        assert body[0] == {"prefix": f"s3://{PROCESSED}/"}
        manifests[split] = body[1:]
    assert sorted(sum(manifests.values(), [])) == sorted(keys)             # every shard once, no stray file
    assert len(manifests["train"]) > len(manifests["validation"]) > 0 and manifests["test"]
    assert result["shards"] == {k: len(v) for k, v in manifests.items()}
    snapshot = json.loads(clean_world.s3.get_object(
        Bucket=ARTIFACTS, Key=f"snapshots/{result['snapshot_id']}/snapshot.json")["Body"].read())
    assert snapshot["splits"] == manifests and snapshot["label_counts"] == {"cat": 5}
    assert result["snapshot_id"].startswith(f"{DAY}-")
    assert len(result["tuning_job_name"]) <= 32 and len(result["training_job_name"]) <= 63
    assert result["evaluation_url"] == result["evaluation_prefix"] + "evaluation.json"


def test_a_shard_keeps_its_split_when_more_data_arrives(clean_world, functions):
    snapshot = functions["snapshot"]
    small = snapshot.split([f"s/{n}.tar" for n in range(50)], 0.1, 0.1)
    large = snapshot.split([f"s/{n}.tar" for n in range(500)], 0.1, 0.1)
    for name, keys in small.items():
        assert set(keys) <= set(large[name])


def test_too_few_shards_for_three_splits_fail_the_step(clean_world, functions):
    _shards(clean_world, 2)
    with pytest.raises(functions["snapshot"].SnapshotTooSmall, match="2 shards"):
        functions["snapshot"].handler({"run_id": "r", "days": [DAY], "labels": {}}, None)


@pytest.mark.parametrize("run_id", ["a", "x" * 80, "Manual_Run 2026/11/29", "---", "UPPER-case_Name"])
def test_job_names_fit_sagemaker_for_any_execution_name(functions, run_id):
    names = functions["snapshot"].job_names("mlp-production", run_id)
    pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
    limits = {"training_job_name": 63, "processing_job_name": 63, "tuning_job_name": 32}
    for key, value in names.items():
        assert len(value) <= limits[key] and __import__("re").match(pattern, value), (key, value)
        assert value.startswith("mlp-production-")
    assert names != functions["snapshot"].job_names("mlp-production", run_id + "2")


# -- decide --------------------------------------------------------------------------------------
def _report(world, candidate: float, production: float | None) -> str:
    body = {"candidate": {"accuracy": candidate}, "production": None if production is None else {"accuracy": production},
            "test_images": 10}
    world.s3.put_object(Bucket=ARTIFACTS, Key="training/evaluations/job/evaluation.json", Body=json.dumps(body).encode())
    return f"s3://{ARTIFACTS}/training/evaluations/job/evaluation.json"


@pytest.mark.parametrize("candidate, production, approved, says", [
    (0.90, 0.85, True, "within"),                 # better model
    (0.85, 0.855, True, "within"),                # slightly worse, inside the tolerance
    (0.83, 0.90, False, "worse than production"),  # worse model
    (0.79, None, False, "below the threshold"),   # first model under the threshold
    (0.80, None, True, "first model"),            # first model: threshold only
    (0.70, 0.60, False, "below the threshold"),   # better than production, still under the threshold
])
def test_decide(clean_world, functions, candidate, production, approved, says):
    result = functions["decide"].handler({"evaluation_url": _report(clean_world, candidate, production)}, None)
    assert result["approved"] is approved and says in result["reason"]
    assert result["status"] == ("approved" if approved else "rejected")
    assert result["production_accuracy"] == (-1.0 if production is None else production)


# -- register ------------------------------------------------------------------------------------
def _training_job(world, name: str) -> None:
    world.sagemaker.create_training_job(
        TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/sagemaker-execution",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{ARTIFACTS}/training/models/"},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})


def _register_event(job: str, approved: bool) -> dict:
    return {"run_id": f"run-{job}", "training_job_name": job, "snapshot_id": "2026-11-28-abc",
            "model_data_url": f"s3://{ARTIFACTS}/training/models/{job}/output/model.tar.gz",
            "evaluation_url": f"s3://{ARTIFACTS}/training/evaluations/{job}/evaluation.json",
            "decision": {"approved": approved, "status": "approved" if approved else "rejected",
                         "reason": "because", "candidate_accuracy": 0.9, "production_accuracy": -1.0}}


def test_register_numbers_versions_and_writes_contract_4_items(clean_world, functions):
    clean_world.ddb.put_item(TableName=VERSIONS, Item={"model_name": {"S": MODEL}, "version": {"N": "4"},
                                                       "status": {"S": "production"}})
    for job in ("mlp-test-job-a", "mlp-test-job-b"):
        _training_job(clean_world, job)
    first = functions["register"].handler(_register_event("mlp-test-job-a", True), None)
    second = functions["register"].handler(_register_event("mlp-test-job-b", False), None)
    assert (first["version"], first["status"], second["version"], second["status"]) == (5, "approved", 6, "rejected")
    item = clean_world.ddb.get_item(TableName=VERSIONS, Key={"model_name": {"S": MODEL}, "version": {"N": "5"}})["Item"]
    contract = {"model_name", "version", "status", "model_data_url", "image_uri", "snapshot_id", "metrics",
                "training_job_name", "model_package_arn", "evaluation_report_url", "created_at", "updated_at"}
    assert contract <= set(item)
    assert item["metrics"]["M"]["test:accuracy"] == {"N": "0.9"} and "train:progress" in item["metrics"]["M"]
    package = clean_world.sagemaker.describe_model_package(ModelPackageName=first["model_package_arn"])
    assert package["ModelPackageGroupName"] == GROUP and package["ModelApprovalStatus"] == "Approved"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith("job-a/output/model.tar.gz")
    rejected = clean_world.sagemaker.describe_model_package(ModelPackageName=second["model_package_arn"])
    assert rejected["ModelApprovalStatus"] == "Rejected"


def test_any_execution_name_makes_valid_package_metadata(clean_world, functions):
    _training_job(clean_world, "mlp-test-job-d")
    event = {**_register_event("mlp-test-job-d", True), "run_id": "retrain(2)!'é_ok:1"}
    arn = functions["register"].handler(event, None)["model_package_arn"]
    metadata = clean_world.sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    assert metadata["run_id"] == "retrain-2---é_ok:1"       # CustomerMetadataMap: [\p{L}\p{Z}\p{N}_.:/=+\-@]
    assert metadata["training_job_name"] == "mlp-test-job-d"


def test_a_retried_registration_returns_the_first_one(clean_world, functions):
    _training_job(clean_world, "mlp-test-job-c")
    first = functions["register"].handler(_register_event("mlp-test-job-c", True), None)
    retried = functions["register"].handler(_register_event("mlp-test-job-c", True), None)
    assert retried == first
    assert len(clean_world.ddb.scan(TableName=VERSIONS)["Items"]) == 1


# -- metrics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("times, figures", [
    ({"TrainingTimeInSeconds": 3600, "BillableTimeInSeconds": 1200}, {"TrainingDurationSeconds": 3600.0,
                                                                      "SpotSavingsPercent": 66.67}),
    ({"TrainingTimeInSeconds": 900, "BillableTimeInSeconds": 900}, {"TrainingDurationSeconds": 900.0,
                                                                    "SpotSavingsPercent": 0.0}),
    ({}, {}),   # no times reported for the job: only the accuracy is published
])
def test_job_figures_are_the_training_time_and_the_spot_saving(functions, times, figures):
    assert functions["metrics"].job_figures({"TrainingJobName": "j", **times}) == figures


def test_metrics_are_published_in_the_stack_namespace_per_model(clean_world, functions, monkeypatch):
    original = sagemaker_models.FakeTrainingJob.__init__

    def timed(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.training_time_in_seconds, self.billable_time_in_seconds = 2000, 500

    monkeypatch.setattr(sagemaker_models.FakeTrainingJob, "__init__", timed)
    _training_job(clean_world, "mlp-test-job-m")
    result = functions["metrics"].handler({"training_job_name": "mlp-test-job-m", "candidate_accuracy": 0.875}, None)
    assert result["published"] == {"ModelAccuracy": 0.875, "TrainingDurationSeconds": 2000.0, "SpotSavingsPercent": 75.0}
    listed = boto3.client("cloudwatch", region_name=REGION).list_metrics(Namespace=NAMESPACE)["Metrics"]
    found = {m["MetricName"]: m["Dimensions"] for m in listed}
    assert {n: found.get(n) for n in result["published"]} == {n: [{"Name": "ModelName", "Value": MODEL}]
                                                              for n in result["published"]}


def test_the_metrics_function_publishes_the_names_the_dashboards_read(functions):
    fn = functions["metrics"]
    assert (fn.MODEL_ACCURACY, fn.TRAINING_DURATION_SECONDS, fn.SPOT_SAVINGS_PERCENT) == (
        project_names.MODEL_ACCURACY, project_names.TRAINING_DURATION_SECONDS, project_names.SPOT_SAVINGS_PERCENT)
    for name in fn.UNITS:
        assert project_names.DIMENSIONS[name] == (fn.DIMENSION,)


# -- SageMaker job events --------------------------------------------------------------------------
@pytest.mark.parametrize("detail, alarms", [
    ({"TrainingJobName": "mlp-test-a", "TrainingJobStatus": "Failed", "FailureReason": "OOM"}, True),
    ({"TrainingJobName": "mlp-test-a", "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}, False),
    ({"ProcessingJobName": "mlp-test-eval", "ProcessingJobStatus": "Stopped", "ExitMessage": "stopped"}, True),
    ({"ProcessingJobName": "mlp-test-eval", "ProcessingJobStatus": "Completed"}, False),
])
def test_job_events_log_every_change_and_alarm_on_failures(clean_world, functions, detail, alarms):
    result = functions["job_events"].handler({"source": "aws.sagemaker", "detail": detail}, None)
    messages = clean_world.sqs.receive_message(QueueUrl=clean_world.alarm_queue_url).get("Messages", [])
    assert bool(messages) is alarms and result["status"] in detail.values()
    if alarms:
        assert result["job_name"] in messages[0]["Body"]
