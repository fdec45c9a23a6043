"""spot_watcher.py for real: a fake IMDSv2 on 127.0.0.1, moto's S3 and CloudWatch, a real hook."""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from gpu_training.metrics import SPOT_INTERRUPTION_METRIC, SPOT_REBALANCE_METRIC, fleet_dimensions

_spec = importlib.util.spec_from_file_location("gpu_fakes_loader", Path(__file__).parent / "fakes" / "loader.py")
loader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loader)

spot_watcher = loader.load_instance_module("spot_watcher")
mlp_common = loader.load_instance_module("mlp_common")
FakeImds = loader.load_fake("imds_server").FakeImds
REGION = "us-east-1"
NAMESPACE = "MLPlatform/GPUTraining/test"
FLEET = "gpu-training-test"
BUCKET = "mlplatform-test-artifacts"
INSTANCE = "i-0123456789abcdef0"
NOTICE = {"action": "terminate", "time": "2024-05-01T12:02:00Z"}
PREFIX = f"checkpoints/{FLEET}/{INSTANCE}/"


@pytest.fixture
def aws(moto, monkeypatch):
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    return s3, boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def checkpoints(tmp_path) -> Path:
    root = tmp_path / "checkpoints"
    (root / "epoch-3").mkdir(parents=True)
    (root / "epoch-3" / "model.pt").write_bytes(b"\x00weights" * 1000)
    (root / "epoch-3" / "optimizer.pt").write_bytes(b"adam")
    (root / "latest").write_text("epoch-3\n")
    return root


def hook_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hook.sh"
    path.write_text(body)
    return path


def watch(imds, checkpoints, tmp_path, *extra: str) -> int:
    return spot_watcher.main([
        "--env-file", "/nonexistent", "--namespace", NAMESPACE, "--fleet-name", FLEET, "--bucket", BUCKET,
        "--checkpoint-dir", str(checkpoints), "--imds-endpoint", imds.endpoint, "--poll-interval", "0.05",
        "--hook", str(tmp_path / "hook.sh"), *extra,
    ])  # fmt: skip


def uploaded(s3) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}


def notices_published(cw) -> list[float]:
    now = datetime.datetime.now(datetime.timezone.utc)
    result = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=SPOT_INTERRUPTION_METRIC, Statistics=["Sum"], Period=60,
        Dimensions=[{"Name": k, "Value": v} for k, v in fleet_dimensions(FLEET).items()],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5),
    )  # fmt: skip
    return [p["Sum"] for p in result["Datapoints"]]


def test_notice_runs_hook_then_uploads_checkpoints(aws, checkpoints, tmp_path, monkeypatch):
    # GIVEN IMDS answers 404 once, then a terminate notice; a hook that saves one more file
    s3, cw = aws
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    marker = tmp_path / "hook-ran"
    hook_file(tmp_path, f'echo "$SPOT_INSTANCE_ACTION" > {marker}\necho final > "$CHECKPOINT_DIR/final.pt"\n')
    with FakeImds(instance_id=INSTANCE, notice=NOTICE, notice_after=1) as imds:
        # WHEN the watcher runs
        rc = watch(imds, checkpoints, tmp_path)
    # THEN it exits 0 after the hook ran and every checkpoint file, the hook's too, is under the prefix
    assert rc == 0
    assert json.loads(marker.read_text()) == NOTICE
    assert uploaded(s3) == {
        PREFIX + "epoch-3/model.pt": b"\x00weights" * 1000,
        PREFIX + "epoch-3/optimizer.pt": b"adam",
        PREFIX + "latest": b"epoch-3\n",
        PREFIX + "final.pt": b"final\n",
    }
    assert notices_published(cw) == [1.0]
    # AND it spoke IMDSv2: a token first, then every GET with it; a 404 poll before the notice
    assert imds.requests[0] == ("PUT", "/latest/api/token", 200)
    assert [r for r in imds.requests if r[1].endswith("instance-action")] == [
        ("GET", "/latest/meta-data/spot/instance-action", 404),
        ("GET", "/latest/meta-data/spot/instance-action", 200),
    ]
    assert all(status != 401 for _, _, status in imds.requests)


@pytest.mark.parametrize(("body", "message"), [("exit 3\n", "CHECKPOINT HOOK FAILED with exit code 3"),
                                               ("exec sleep 5\n", "CHECKPOINT HOOK TIMED OUT")])  # fmt: skip
def test_failing_or_hanging_hook_still_syncs(aws, checkpoints, tmp_path, monkeypatch, caplog, body, message):
    s3, _ = aws
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    hook_file(tmp_path, body)
    with FakeImds(instance_id=INSTANCE, notice=NOTICE, notice_after=0) as imds:
        assert watch(imds, checkpoints, tmp_path, "--hook-timeout", "0.5") == 0
    assert any(message in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert len(uploaded(s3)) == 3


def test_no_hook_only_syncs(aws, checkpoints, tmp_path, monkeypatch, caplog):
    s3, _ = aws
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    with FakeImds(instance_id=INSTANCE, notice=NOTICE, notice_after=0) as imds:
        assert watch(imds, checkpoints, tmp_path) == 0  # hook.sh was never written
    assert len(uploaded(s3)) == 3
    assert any("no checkpoint hook configured" in r.getMessage() for r in caplog.records)


def test_once_without_notice_does_nothing(aws, checkpoints, tmp_path, monkeypatch):
    s3, cw = aws
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    marker = tmp_path / "hook-ran"
    hook_file(tmp_path, f"touch {marker}\n")
    with FakeImds(instance_id=INSTANCE, notice=None) as imds:
        assert watch(imds, checkpoints, tmp_path, "--once") == 0
    assert uploaded(s3) == {}
    assert not marker.exists()
    assert notices_published(cw) == []
    assert [r for r in imds.requests if r[1].endswith("instance-action")] == [("GET", "/latest/meta-data/spot/instance-action", 404)]


def test_only_new_or_changed_files_are_uploaded_again(aws, checkpoints, tmp_path, caplog):
    s3, _ = aws
    state = tmp_path / "state" / "sync.json"
    assert spot_watcher.sync_checkpoints(s3, str(checkpoints), BUCKET, PREFIX, str(state)) == 0
    # GIVEN one file changed and one added since the first sync
    (checkpoints / "latest").write_text("epoch-4\n")
    (checkpoints / "epoch-4.pt").write_bytes(b"new")
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "epoch-3/model.pt")  # would come back if re-sent
    caplog.clear()
    # WHEN syncing again, THEN only those two are sent
    assert spot_watcher.sync_checkpoints(s3, str(checkpoints), BUCKET, PREFIX, str(state)) == 0
    assert any("uploading 2 new or changed file(s)" in r.getMessage() for r in caplog.records)
    objects = uploaded(s3)
    assert objects[PREFIX + "latest"] == b"epoch-4\n" and objects[PREFIX + "epoch-4.pt"] == b"new"
    assert PREFIX + "epoch-3/model.pt" not in objects


def test_upload_failure_exits_1_so_systemd_retries(aws, checkpoints, tmp_path, monkeypatch, caplog):
    s3, _ = aws
    s3.delete_bucket(Bucket=BUCKET)
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    with FakeImds(instance_id=INSTANCE, notice=NOTICE, notice_after=0) as imds:
        assert watch(imds, checkpoints, tmp_path) == 1
    assert any("CHECKPOINT SYNC INCOMPLETE: 3 upload(s) failed" in r.getMessage() for r in caplog.records)


def test_imds_token_is_renewed_before_expiry_and_after_401():
    with FakeImds(instance_id=INSTANCE) as imds:
        client = mlp_common.Imds(imds.endpoint, ttl_s=1)  # renewed after 0.5 s
        assert client.get("meta-data/instance-id") == INSTANCE
        time.sleep(0.6)
        assert client.get("meta-data/instance-id") == INSTANCE
        imds.tokens.clear()  # IMDS forgets every token: the next GET gets 401, then retries with a new one
        assert client.get("meta-data/instance-id") == INSTANCE
        assert client.get("meta-data/spot/instance-action") is None  # 404 = no notice
    puts = [r for r in imds.requests if r[0] == "PUT"]
    assert len(puts) == 3
    assert ("GET", "/latest/meta-data/instance-id", 401) in imds.requests


def test_sigterm_exits_0(tmp_path):
    # As systemd stops it: a subprocess, polling a notice-less IMDS, gets SIGTERM (nothing to upload).
    (tmp_path / "empty").mkdir()
    with FakeImds(instance_id=INSTANCE, notice=None) as imds:
        env = {"PATH": "/usr/bin:/bin", "AWS_REGION": REGION, "PYTHONUNBUFFERED": "1",
               "MLP_STATE_DIR": str(tmp_path / "state")}
        proc = subprocess.Popen(
            [sys.executable, str(loader.INSTANCE_DIR / "spot_watcher.py"), "--env-file", "/nonexistent",
             "--namespace", NAMESPACE, "--fleet-name", FLEET, "--bucket", BUCKET,
             "--checkpoint-dir", str(tmp_path / "empty"),
             "--imds-endpoint", imds.endpoint, "--poll-interval", "0.1"],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert "watching for Spot interruption notices on " + INSTANCE in proc.stderr.readline()
        deadline = time.monotonic() + 10
        while imds.action_polls < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stderr.close()
    assert imds.action_polls >= 2


def test_rebalance_recommendation_checkpoints_and_keeps_watching_until_the_notice(aws, checkpoints, tmp_path, monkeypatch):
    # GIVEN a rebalance recommendation at once, and the interruption notice only after several polls
    s3, cw = aws
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    runs = tmp_path / "hook-runs"
    hook_file(tmp_path, f'echo run >> {runs}\n')
    with FakeImds(instance_id=INSTANCE, notice=NOTICE, notice_after=3,
                  rebalance={"noticeTime": "2024-05-01T12:00:00Z"}) as imds:
        # WHEN the watcher runs
        rc = watch(imds, checkpoints, tmp_path)
    # THEN it checkpointed on the recommendation, kept polling, and checkpointed again on the notice
    assert rc == 0
    assert runs.read_text().splitlines() == ["run", "run"]
    assert set(uploaded(s3)) == {PREFIX + "epoch-3/model.pt", PREFIX + "epoch-3/optimizer.pt", PREFIX + "latest"}
    rebalance_polls = [r for r in imds.requests if r[1].endswith("recommendations/rebalance")]
    assert rebalance_polls == [("GET", "/latest/meta-data/events/recommendations/rebalance", 200)]
    assert len([r for r in imds.requests if r[1].endswith("instance-action")]) == 4
    now = datetime.datetime.now(datetime.timezone.utc)
    points = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=SPOT_REBALANCE_METRIC, Statistics=["Sum"], Period=60,
        Dimensions=[{"Name": "FleetName", "Value": FLEET}],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5))["Datapoints"]
    assert [p["Sum"] for p in points] == [1.0]


def test_stop_without_any_notice_runs_the_hook_and_syncs(aws, checkpoints, tmp_path, monkeypatch):
    # GIVEN no notice and no recommendation ever (the fleet scales in, or the stack is destroyed)
    s3, _ = aws
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    hook_file(tmp_path, 'echo "$SPOT_INSTANCE_ACTION" > "$CHECKPOINT_DIR/stop-reason"\n')
    with FakeImds(instance_id=INSTANCE, notice=None) as imds:
        # WHEN systemd stops the watcher (SIGTERM), once it is polling
        def stop_when_polling():
            deadline = time.monotonic() + 10
            while imds.action_polls < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=stop_when_polling, daemon=True).start()
        rc = watch(imds, checkpoints, tmp_path)
    # THEN the hook ran and every checkpoint, the hook's file included, is in S3
    assert rc == 0
    assert set(uploaded(s3)) == {PREFIX + "epoch-3/model.pt", PREFIX + "epoch-3/optimizer.pt", PREFIX + "latest",
                                 PREFIX + "stop-reason"}

