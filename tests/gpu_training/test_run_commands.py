"""The start/stop training documents (their shell, parameters and grants) and training_run.py, run for
real against moto's S3 and DynamoDB with fake systemd-run and torchrun on PATH."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from gpu_training import run_commands
from gpu_training.run_commands import start_document, stop_document
from shared.table import EXPERIMENTS

_spec = importlib.util.spec_from_file_location("gpu_fakes_loader", Path(__file__).parent / "fakes" / "loader.py")
loader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loader)
training_run = loader.load_instance_module("training_run")

REGION = "us-east-1"
BUCKET = "ml-model-artifacts-test"
TABLE = "gpu-training-test-experiments"
PREFIX = "/ml/hparams/test"
GOOD = {"runId": "resnet-7", "experimentId": "resnet50", "scriptKey": "scripts/resnet/train.py", "nodes": "2",
        "rendezvousHost": "10.20.1.17", "hparamsPrefix": PREFIX + "/resnet"}


def _rendered(document: dict, values: dict) -> str:
    """The runCommand as the agent runs it, {{ param }} replaced by values."""
    text = "\n".join(document["mainSteps"][0]["inputs"]["runCommand"]) + "\n"
    return re.sub(r"\{\{ (\w+) \}\}", lambda m: values[m.group(1)], text)


@pytest.mark.parametrize("document", [start_document(PREFIX), stop_document()], ids=["start", "stop"])
def test_document_shell_is_clean_and_names_only_its_parameters(document, tmp_path):
    script = _rendered(document, GOOD)
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    if shutil.which("shellcheck"):
        path = tmp_path / "doc.sh"
        path.write_text(script)
        out = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout
    used = set(re.findall(r"\{\{ (\w+) \}\}", json.dumps(document["mainSteps"])))
    assert used == set(document["parameters"])
    assert document["schemaVersion"] == "2.2"
    assert all("allowedPattern" in p for p in document["parameters"].values())


@pytest.mark.parametrize("name, bad", [
    ("runId", "x'; reboot #"), ("runId", "Run_1"), ("experimentId", "a b"), ("scriptKey", "scripts/../x.py"),
    ("scriptKey", "other/train.py"), ("scriptKey", "scripts/train.sh"), ("nodes", "0"), ("nodes", "101"),
    ("rendezvousHost", "10.0.0.256"), ("rendezvousHost", "$(id)"), ("hparamsPrefix", "/ml/hparams/prod"),
    ("hparamsPrefix", PREFIX + "/../prod"),
])
def test_parameters_admit_no_shell_and_nothing_outside_the_stack(name, bad):
    parameters = start_document(PREFIX)["parameters"]
    assert re.match(parameters[name]["allowedPattern"], GOOD[name])
    assert not re.match(parameters[name]["allowedPattern"], bad)


def test_the_instance_script_checks_the_same_patterns_as_the_documents():
    assert training_run.RUN_ID.pattern == run_commands.RUN_ID_PATTERN
    assert training_run.EXPERIMENT_ID.pattern == run_commands.EXPERIMENT_ID_PATTERN
    assert training_run.SCRIPT_KEY.pattern == run_commands.SCRIPT_KEY_PATTERN
    assert training_run.IPV4.pattern == run_commands.IPV4_PATTERN


def test_the_stack_ships_both_documents_and_grants_them_only_on_its_fleet(gpu_plan):
    docs = {d.name: d for d in gpu_plan.of_type("aws:ssm/document:Document")}
    assert set(docs) == {"runs-start", "runs-stop"}
    assert docs["runs-start"].inputs["name"] == gpu_plan.outputs["start_training_document_name"]
    content = json.loads(docs["runs-start"].inputs["content"])
    assert content["parameters"]["hparamsPrefix"]["default"] == "/ml/hparams/dev"
    policy = json.loads(gpu_plan.one("aws:iam/rolePolicy:RolePolicy", "runs-send").inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert sorted(statements["RunDocuments"]["Resource"]) == sorted(d.state["arn"] for d in docs.values())
    assert statements["RunOnFleetInstances"]["Condition"]["StringEquals"] == {
        "aws:ResourceTag/mlplatform:fleet": "gpu-training-dev",
        "aws:ResourceTag/aws:ec2launchtemplate:id": gpu_plan.one("aws:ec2/launchTemplate:LaunchTemplate", "gpu-lt").id}
    everything = json.dumps([p.inputs["policy"] for p in gpu_plan.of_type("aws:iam/rolePolicy:RolePolicy")])
    assert "AWS-RunShellScript" not in everything


# --- training_run.py on the instance ------------------------------------------------------------
@pytest.fixture(scope="module")
def aws_account():
    """moto's S3 and DynamoDB with the artifacts bucket and experiments table, once per module."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=GOOD["scriptKey"], Body=b"print('train')\n")
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**EXPERIMENTS.create_table_request(TABLE))  # the deployed schema
        yield s3, dynamodb


@pytest.fixture
def instance(aws_account, tmp_path, monkeypatch):
    """An instance's settings and PATH: fake systemd-run and torchrun that log their argv; an empty table."""
    s3, dynamodb = aws_account
    for item in dynamodb.scan(TableName=TABLE)["Items"]:
        dynamodb.delete_item(TableName=TABLE, Key={k: item[k] for k in ("experiment_id", "run_id")})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    for tool in ("systemd-run", "torchrun"):  # sh, not Python: they start in milliseconds
        (bin_dir / tool).write_text(f'#!/bin/sh\nprintf "%s\\n" "{tool} $RUN_ID" "$@" ---- >>"{calls}"\n'
                                    'exit "${FAKE_TORCHRUN_EXIT:-0}"\n')
        (bin_dir / tool).chmod(0o755)
    settings = {"AWS_REGION": REGION, "FLEET_NAME": "gpu-training-test", "ARTIFACTS_BUCKET": BUCKET,
                "EXPERIMENTS_TABLE": TABLE, "HPARAMS_PREFIX": PREFIX, "CHECKPOINT_DIR": str(tmp_path / "ckpt"),
                "INSTANCE_ID": "i-0aaaaaaaaaaaaaaa1", "LOCAL_IPV4": GOOD["rendezvousHost"],
                "MLP_RUN_DIR": str(tmp_path / "runs"), "MLP_LOG_DIR": str(tmp_path / "logs"),
                "SYSTEMD_RUN": str(bin_dir / "systemd-run"), "TORCHRUN": str(bin_dir / "torchrun")}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return {"s3": s3, "dynamodb": dynamodb, "calls": calls, "tmp": tmp_path}


def _argv(action: str, **overrides) -> list[str]:
    values = {**GOOD, **overrides}
    flags = {"runId": "--run-id", "experimentId": "--experiment-id", "scriptKey": "--script-key", "nodes": "--nodes",
             "rendezvousHost": "--rendezvous-host", "hparamsPrefix": "--hparams-prefix"}
    return ["--env-file", "/nonexistent", action, *[x for k, f in flags.items() for x in (f, values[k])]]


def _record(instance) -> dict:
    item = instance["dynamodb"].get_item(TableName=TABLE, Key={"experiment_id": {"S": GOOD["experimentId"]},
                                                               "run_id": {"S": GOOD["runId"]}}).get("Item", {})
    return {k: next(iter(v.values())) for k, v in item.items()}


def _calls(instance) -> list:
    """(tool, argv, RUN_ID in its environment) of each fake tool call."""
    calls = []
    for block in instance["calls"].read_text().split("----\n")[:-1]:
        head, *argv = block.splitlines()
        tool, _, run_id = head.partition(" ")
        calls.append((tool, argv, run_id or None))
    return calls


def test_start_downloads_the_script_records_the_run_and_starts_the_unit(instance):
    # WHEN the start document runs on the rendezvous instance
    assert training_run.main(_argv("start")) == 0
    # THEN the script is on disk, the run is RUNNING in the experiments table, and a unit supervises it
    assert (instance["tmp"] / "runs" / "resnet-7" / "train.py").read_bytes() == b"print('train')\n"
    record = _record(instance)
    assert record["status"] == "RUNNING" and record["nodes"] == "2" and record["hparams_prefix"] == PREFIX + "/resnet"
    assert record["script"] == f"s3://{BUCKET}/scripts/resnet/train.py" and record["started_at"].endswith("Z")
    [(tool, argv, _)] = _calls(instance)
    assert tool == "systemd-run" and argv[:3] == ["--unit", "mlplatform-train-resnet-7", "--collect"]
    assert argv[argv.index("supervise") + 1:][-1] == "--leader"
    assert "After=mlplatform-spot-watcher.service" in argv, "the run stops before the watcher's final sync"
    # AND a second start with the same run id is refused
    assert training_run.main(_argv("start")) == 2


def test_other_instances_start_without_writing_the_record(instance, monkeypatch):
    monkeypatch.setenv("LOCAL_IPV4", "10.20.2.9")
    assert training_run.main(_argv("start")) == 0
    assert _record(instance) == {}
    assert "--leader" not in _calls(instance)[0][1]


@pytest.mark.parametrize("exit_code, status", [("0", "SUCCEEDED"), ("1", "FAILED")])
def test_supervise_runs_torchrun_and_records_the_outcome(instance, monkeypatch, exit_code, status):
    assert training_run.main(_argv("start")) == 0
    monkeypatch.setenv("FAKE_TORCHRUN_EXIT", exit_code)
    assert training_run.main([*_argv("supervise"), "--leader"]) == (0 if status == "SUCCEEDED" else 1)
    record = _record(instance)
    assert record["status"] == status and record["exit_code"] == exit_code and "ended_at" in record
    tool, argv, run_id = _calls(instance)[-1]
    assert tool == "torchrun" and run_id == "resnet-7"
    assert argv[argv.index("--rdzv-endpoint") + 1] == "10.20.1.17:29400"
    assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--nproc-per-node") + 1] == "gpu"
    assert argv[-1].endswith("runs/resnet-7/train.py")


@pytest.mark.parametrize("override", [{"runId": "a;b"}, {"hparamsPrefix": "/ml/hparams/prod"},
                                      {"scriptKey": "models/x.py"}, {"nodes": "0"}])
def test_start_refuses_bad_parameters_even_past_ssm(instance, override):
    assert training_run.main(_argv("start", **override)) == 2
    assert not instance["calls"].exists()


def test_an_archived_script_fails_with_the_restore_step(instance, capsys):
    instance["s3"].put_object(Bucket=BUCKET, Key="scripts/old.py", Body=b"x", StorageClass="GLACIER")
    assert training_run.main(_argv("start", scriptKey="scripts/old.py")) == 2
    assert "restore-object" in capsys.readouterr().err
