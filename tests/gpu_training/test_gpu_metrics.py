"""gpu_metrics.py for real: a fake nvidia-smi on PATH, moto's CloudWatch, and what got published."""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from gpu_training.metrics import (
    GPU_ERROR_COUNT_METRIC,
    HEALTHY_GPU_COUNT_METRIC,
    HEARTBEAT_METRIC,
    fleet_dimensions,
)

_spec = importlib.util.spec_from_file_location("gpu_fakes_loader", Path(__file__).parent / "fakes" / "loader.py")
loader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loader)

gpu_metrics = loader.load_instance_module("gpu_metrics")
FakeImds = loader.load_fake("imds_server").FakeImds
REGION = "us-east-1"
NAMESPACE = "MLPlatform/GPUTraining/test"
FLEET = "gpu-training-test"
INSTANCE = "i-0abc0abc0abc0abc0"
PY38 = Path.home() / ".pyenv" / "versions" / "3.8.18" / "bin" / "python"


@pytest.fixture
def aws(moto):
    return boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def fake_smi(monkeypatch):
    """Put the fake nvidia-smi first on PATH; returns a setter for its mode."""
    monkeypatch.setenv("PATH", f"{loader.FAKES_DIR}{os.pathsep}{os.environ['PATH']}")
    return lambda mode: monkeypatch.setenv("FAKE_NVIDIA_SMI", mode)


def run_once(*extra: str) -> int:
    base = ["--once", "--env-file", "/nonexistent", "--namespace", NAMESPACE, "--fleet-name", FLEET]
    return gpu_metrics.main([*base, *extra])


def published(cw, name: str, dims: dict[str, str]) -> list[float]:
    """Sum of `name` with exactly `dims`, per minute, over the last few minutes."""
    now = datetime.datetime.now(datetime.timezone.utc)
    result = cw.get_metric_data(
        MetricDataQueries=[{
            "Id": "m",
            "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": name,
                                      "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                           "Period": 60, "Stat": "Sum"},
        }],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=5),
    )  # fmt: skip
    return result["MetricDataResults"][0]["Values"]


def series(cw) -> set[tuple[str, frozenset]]:
    metrics = cw.list_metrics(Namespace=NAMESPACE)["Metrics"]
    return {(m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in metrics}


CASES = {
    # mode: (healthy GPUs, error count, text of the loud log line)
    "healthy1": (1, 0, None),
    "healthy8": (8, 0, None),
    "power_na": (1, 0, None),  # power and ECC [N/A] are normal on some GPUs
    "ecc": (1, 1, "3 uncorrected ECC errors"),
    "unknown_error": (0, 1, "utilization.gpu unreadable ([Unknown Error])"),
    "garbled": (1, 1, "unparsable nvidia-smi line"),
    "driver_fail": (0, 1, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"),
    "no_gpus": (0, 1, "No devices were found"),
}


@pytest.mark.parametrize("mode", CASES)
def test_publishes_gpu_health_per_fleet_and_instance(aws, fake_smi, caplog, mode):
    # GIVEN a machine whose nvidia-smi behaves as `mode`
    fake_smi(mode)
    healthy, errors, message = CASES[mode]
    # WHEN the collector takes one sample
    assert run_once("--instance-id", INSTANCE) == 0
    # THEN the counts are published for the fleet and the instance, with the heartbeat for the fleet only
    fleet = fleet_dimensions(FLEET)
    per_instance = {**fleet, "InstanceId": INSTANCE}
    assert published(aws, HEALTHY_GPU_COUNT_METRIC, fleet) == [healthy]
    assert published(aws, HEALTHY_GPU_COUNT_METRIC, per_instance) == [healthy]
    assert published(aws, GPU_ERROR_COUNT_METRIC, fleet) == [errors]
    assert published(aws, GPU_ERROR_COUNT_METRIC, per_instance) == [errors]
    assert published(aws, HEARTBEAT_METRIC, fleet) == [1]
    assert series(aws) == {
        (HEARTBEAT_METRIC, frozenset(fleet.items())),
        *((m, frozenset(d.items())) for m in (HEALTHY_GPU_COUNT_METRIC, GPU_ERROR_COUNT_METRIC)
          for d in (fleet, per_instance)),  # fmt: skip
    }
    loud = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    if message:
        assert any(message in line and "GPU ERROR" in line for line in loud), loud
    else:
        assert loud == []


def test_no_nvidia_smi_at_all(aws, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi anywhere
    assert run_once("--instance-id", INSTANCE) == 0
    assert published(aws, HEALTHY_GPU_COUNT_METRIC, fleet_dimensions(FLEET)) == [0]
    assert published(aws, GPU_ERROR_COUNT_METRIC, fleet_dimensions(FLEET)) == [1]
    assert published(aws, HEARTBEAT_METRIC, fleet_dimensions(FLEET)) == [1]
    assert any("nvidia-smi not found" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_hanging_nvidia_smi_is_cut_off(aws, fake_smi, monkeypatch, caplog):
    fake_smi("hang")
    monkeypatch.setattr(gpu_metrics, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    assert run_once("--instance-id", INSTANCE) == 0
    assert published(aws, GPU_ERROR_COUNT_METRIC, fleet_dimensions(FLEET)) == [1]
    assert any("timed out" in r.getMessage() for r in caplog.records)


def test_instance_id_comes_from_imdsv2(aws, fake_smi, monkeypatch):
    fake_smi("healthy1")
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    with FakeImds(instance_id="i-0feedfeedfeedfeed") as imds:
        assert run_once("--imds-endpoint", imds.endpoint) == 0
    assert imds.requests[0] == ("PUT", "/latest/api/token", 200)
    assert ("GET", "/latest/meta-data/instance-id", 200) in imds.requests
    dims = {**fleet_dimensions(FLEET), "InstanceId": "i-0feedfeedfeedfeed"}
    assert published(aws, HEALTHY_GPU_COUNT_METRIC, dims) == [1]


def test_settings_come_from_the_env_file(aws, fake_smi, tmp_path, monkeypatch):
    fake_smi("healthy8")
    env_file = tmp_path / "env"
    env_file.write_text(f"AWS_REGION={REGION}\nMETRIC_NAMESPACE={NAMESPACE}\nFLEET_NAME={FLEET}\nINSTANCE_ID={INSTANCE}\n")
    monkeypatch.delenv("AWS_REGION")
    assert gpu_metrics.main(["--once", "--env-file", str(env_file)]) == 0
    assert published(aws, HEALTHY_GPU_COUNT_METRIC, fleet_dimensions(FLEET)) == [8]


def test_publish_failure_is_loud_and_fails_once(fake_smi, monkeypatch, caplog):
    # GIVEN an unreachable CloudWatch endpoint (nothing listens on port 9) and no retries
    fake_smi("healthy1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    rc = run_once("--instance-id", INSTANCE, "--region", REGION, "--endpoint-url", "http://127.0.0.1:9")
    assert rc == 1
    assert any("PutMetricData failed" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_missing_settings_stop_with_a_message(fake_smi):
    with pytest.raises(SystemExit, match="METRIC_NAMESPACE"):
        gpu_metrics.main(["--once", "--env-file", "/nonexistent", "--fleet-name", FLEET, "--region", REGION])


def test_loop_sends_one_heartbeat_per_minute(fake_smi, monkeypatch, capsys):
    # GIVEN a 10 s interval (sleep faked), WHEN three samples are taken within the same minute
    fake_smi("healthy1")
    fixed = datetime.datetime(2024, 5, 1, 12, 0, 7, tzinfo=datetime.timezone.utc)
    fixed_now = type("FixedNow", (datetime.datetime,), {"now": classmethod(lambda cls, tz=None: fixed)})
    monkeypatch.setattr(gpu_metrics, "datetime", SimpleNamespace(datetime=fixed_now, timezone=datetime.timezone))
    sleeps = []

    def fake_sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(gpu_metrics, "time", SimpleNamespace(monotonic=time.monotonic, sleep=fake_sleep))
    with pytest.raises(KeyboardInterrupt):
        gpu_metrics.main(["--dry-run", "--interval", "10", "--env-file", "/nonexistent", "--namespace", NAMESPACE,
                          "--fleet-name", FLEET, "--instance-id", INSTANCE])  # fmt: skip
    # THEN each sample has the GPU counts but only the first has the heartbeat, stamped on the minute
    out = capsys.readouterr().out
    docs = [json.loads(chunk) for chunk in out.replace("}\n{", "}\n\0{").split("\0")]
    assert len(docs) == 3
    heartbeats = [d for doc in docs for d in doc["MetricData"] if d["MetricName"] == HEARTBEAT_METRIC]
    assert len(heartbeats) == 1 and heartbeats[0]["Timestamp"].startswith("2024-05-01 12:00:00")
    assert all(any(d["MetricName"] == HEALTHY_GPU_COUNT_METRIC for d in doc["MetricData"]) for doc in docs)


def run_script(python: str, mode: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{loader.FAKES_DIR}{os.pathsep}/usr/bin:/bin", "FAKE_NVIDIA_SMI": mode}
    cmd = [python, str(loader.INSTANCE_DIR / "gpu_metrics.py"), "--once", "--dry-run", "--env-file", "/nonexistent",
           "--namespace", NAMESPACE, "--fleet-name", FLEET, "--instance-id", INSTANCE, *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("python", [sys.executable, str(PY38)], ids=["current", "py38"])
def test_runs_standalone_dry_run(python):
    # As on the instance: `python3 /opt/mlplatform/gpu_metrics.py`, here printing instead of sending.
    if not Path(python).exists():
        pytest.skip(f"{python} not installed")
    out = run_script(python, "ecc")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["Namespace"] == NAMESPACE
    values = {(d["MetricName"], len(d["Dimensions"])): d["Value"] for d in doc["MetricData"]}
    assert values == {(HEALTHY_GPU_COUNT_METRIC, 1): 1, (HEALTHY_GPU_COUNT_METRIC, 2): 1,
                      (GPU_ERROR_COUNT_METRIC, 1): 1, (GPU_ERROR_COUNT_METRIC, 2): 1, (HEARTBEAT_METRIC, 1): 1}  # fmt: skip
    assert "GPU ERROR" in out.stderr
