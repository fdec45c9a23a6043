"""The rendered gpu-training user_data: bash syntax, shellcheck, size, agent config schema, embedded files."""
from __future__ import annotations


import ast
import gzip
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from gpu_training.metrics import FLEET_AGGREGATE_DIMENSIONS, FLEET_GPU_UTILIZATION_METRIC, GPU_MEASUREMENTS
from gpu_training.user_data import (
    INSTANCE_DIR,
    INSTANCE_FILES,
    MAX_USER_DATA_BYTES,
    compress,
    TEMPLATE,
    UserDataParams,
    cloudwatch_agent_config,
    render_user_data,
)

# The agent's JSON schema, kept in the repository (source and date: tests/data/README.md).
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "cloudwatch-agent-schema.json"
# What the agent's nvidia_gpu plugin registers (aws/amazon-cloudwatch-agent; see shared/VALIDATORS.md).
REGISTERED_NVIDIA_MEASUREMENTS = {
    "utilization_gpu", "utilization_memory", "memory_total", "memory_used", "memory_free", "temperature_gpu",
    "power_draw", "fan_speed", "pcie_link_gen_current", "pcie_link_width_current", "encoder_stats_session_count",
    "encoder_stats_average_fps", "encoder_stats_average_latency", "clocks_current_graphics", "clocks_current_sm",
    "clocks_current_memory", "clocks_current_video",
}  # fmt: skip
HOOK = "pkill -USR1 -f 'train.py' || true\nsleep 20  # let the trainer write its checkpoint"


@pytest.fixture(scope="module")
def params() -> UserDataParams:
    return UserDataParams(
        region="eu-west-1",
        stack="dev",
        fleet_name="gpu-training-dev",
        metric_namespace="MLPlatform/GPUTraining/dev",
        training_log_group="/mlplatform/dev/gpu-training/training",
        system_log_group="/mlplatform/dev/gpu-training/system",
        artifacts_bucket="mlplatform-dev-artifacts-123456789012",
        experiments_table="gpu-training-dev-experiments",
        checkpoint_hook=HOOK,
    )


@pytest.fixture(scope="module")
def script(params) -> str:
    return render_user_data(params)


@pytest.fixture(scope="module")
def script_file(script, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user_data") / "user_data.sh"
    path.write_text(script)
    return path


def heredoc(script: str, delimiter: str) -> str:
    m = re.search(rf"<<'{delimiter}'[^\n]*\n(.*?)\n{delimiter}\n", script, re.S)
    assert m, f"no heredoc {delimiter}"
    return m.group(1)


# --- shell -------------------------------------------------------------------------------------


def test_bash_syntax(script_file):
    subprocess.run(["bash", "-n", str(script_file)], check=True)


def test_shellcheck_has_no_findings(script_file):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    out = subprocess.run(["shellcheck", "-s", "bash", str(script_file)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_every_shellcheck_exclusion_gives_a_reason(script):
    for line in script.splitlines():
        if "shellcheck disable" in line:
            assert re.search(r"disable=SC\d+(,SC\d+)*\s+#\s*\S", line), line


def test_fits_ec2_user_data_limit_even_with_the_longest_hook(params, script):
    # gzip'd, as the launch template carries it (cloud-init unpacks gzip user_data)
    assert len(compress(script)) <= MAX_USER_DATA_BYTES
    assert gzip.decompress(compress(script)).decode() == script
    assert compress(script) == compress(script), "compression must be reproducible (no gzip timestamp)"
    longest = render_user_data(replace(params, checkpoint_hook="x'\"$`\\" * 85 + "ab"))
    assert len(compress(longest)) <= MAX_USER_DATA_BYTES


def test_too_big_raises():
    import gpu_training.user_data as ud

    original = ud.MAX_USER_DATA_BYTES
    try:
        ud.MAX_USER_DATA_BYTES = 1000
        with pytest.raises(ValueError, match="bytes"):
            ud.render_user_data(UserDataParams("us-east-1", "dev", "f", "N", "t", "s", "bucket", "table"))
    finally:
        ud.MAX_USER_DATA_BYTES = original


def test_err_trap_logs_the_failing_line(tmp_path):
    # GIVEN the script's preamble with the log file redirected, WHEN a command fails
    preamble = TEMPLATE.read_text().split("#@@PARAMS@@")[0]
    log_file = tmp_path / "bootstrap.log"
    test_script = preamble.replace("/var/log/mlplatform-bootstrap.log", str(log_file)) + "log started\nfalse\nlog never\n"
    failing_line = test_script.splitlines().index("false") + 1
    out = subprocess.run(["bash", "-c", test_script], capture_output=True, text=True)
    # THEN it stops with the error, and the log file and stdout name the line and command
    assert out.returncode == 1
    text = log_file.read_text()
    assert f"FAILED (exit 1) at line {failing_line}: false" in text
    assert "started" in text and "never" not in text
    assert "FAILED" in out.stdout


def test_params_and_settings_reach_the_script(params, script):
    for value in (params.region, params.fleet_name, params.metric_namespace, params.training_log_group,
                  params.system_log_group, params.artifacts_bucket, params.checkpoint_dir, params.hparams_prefix):  # fmt: skip
        assert value in script
    env_file = re.search(r"<<ENV\n(.*?)\nENV\n", script, re.S).group(1)
    keys = {line.split("=", 1)[0] for line in env_file.splitlines()}
    assert {"AWS_REGION", "FLEET_NAME", "INSTANCE_ID", "METRIC_NAMESPACE", "ARTIFACTS_BUCKET", "CHECKPOINT_DIR",
            "CHECKPOINT_S3_URI", "CHECKPOINT_HOOK", "HPARAMS_PREFIX"} <= keys  # fmt: skip
    assert "CHECKPOINT_S3_URI=s3://${ARTIFACTS_BUCKET}/checkpoints/${FLEET_NAME}/${INSTANCE_ID}/" in env_file
    assert "TRAINING_LOG_DIR=/var/log/training" in script
    assert "amazoncloudwatch-agent-${REGION}.s3.${REGION}.amazonaws.com/ubuntu/${arch}/latest/amazon-cloudwatch-agent.deb" in script
    assert "-a fetch-config -m ec2 -s -c file:/opt/mlplatform/cloudwatch-agent.json" in script
    assert "X-aws-ec2-metadata-token-ttl-seconds" in script


def test_services_are_enabled_and_restart_as_intended(script):
    assert "unit mlplatform-gpu-metrics \"mlplatform GPU health metrics\" gpu_metrics.py always" in script
    assert "unit mlplatform-spot-watcher \"mlplatform Spot interruption watcher\" spot_watcher.py on-failure" in script
    assert "systemctl enable mlplatform-gpu-metrics.service mlplatform-spot-watcher.service" in script
    assert "EnvironmentFile=/etc/mlplatform/env" in script


def test_driver_install_is_conditional(params):
    assert "INSTALL_DRIVER_IF_MISSING=1" in render_user_data(params)
    assert "INSTALL_DRIVER_IF_MISSING=0" in render_user_data(replace(params, install_driver_if_missing=False))


# --- embedded content ----------------------------------------------------------------------------


def test_embedded_scripts_are_byte_identical_to_the_repo_files(script, tmp_path):
    # Unpack exactly as the instance does.
    blob = heredoc(script, "MLP_FILES_B64")
    subprocess.run(f"base64 -d | tar -xz --no-same-owner -C {tmp_path}", shell=True, input=blob.encode(), check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(name for name, _ in INSTANCE_FILES)
    for name, mode in INSTANCE_FILES:
        assert (tmp_path / name).read_bytes() == (INSTANCE_DIR / name).read_bytes(), name
        assert (tmp_path / name).stat().st_mode & 0o777 == mode


def test_rendering_is_deterministic(params, script):
    assert render_user_data(params) == script


def test_hook_is_embedded_verbatim(params, script):
    assert heredoc(script, "MLP_HOOK") == "#!/bin/bash\n" + HOOK
    assert "HAS_CHECKPOINT_HOOK=1" in script
    assert "HAS_CHECKPOINT_HOOK=0" in render_user_data(replace(params, checkpoint_hook=""))


def test_embedded_agent_config_is_the_function_result(params, script):
    line = next(l for l in script.splitlines() if l.startswith("CWAGENT_CONFIG="))
    assert json.loads(shlex.split(line.split("=", 1)[1])[0]) == cloudwatch_agent_config(params)


def test_instance_scripts_parse_as_python_38():
    for name, _ in INSTANCE_FILES:
        ast.parse((INSTANCE_DIR / name).read_text(), filename=name, feature_version=(3, 8))


# --- CloudWatch agent config ---------------------------------------------------------------------


def test_agent_config_validates_against_the_agent_schema(params):
    assert SCHEMA_PATH.exists(), f"agent schema missing at {SCHEMA_PATH}"
    schema = json.loads(SCHEMA_PATH.read_text())
    config = cloudwatch_agent_config(params)
    errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(config)]
    assert errors == []
    # The schema knows the plugin as nvidia_smi (the agent maps nvidia_gpu to it): check that shape too.
    metrics = config["metrics"]["metrics_collected"]
    as_nvidia_smi = json.loads(json.dumps(config))
    as_nvidia_smi["metrics"]["metrics_collected"]["nvidia_smi"] = as_nvidia_smi["metrics"]["metrics_collected"].pop("nvidia_gpu")
    assert [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(as_nvidia_smi)] == []
    assert set(metrics["nvidia_gpu"]["measurement"]) <= REGISTERED_NVIDIA_MEASUREMENTS


def test_schema_rejects_a_broken_config(params):
    # GIVEN the validator really checks: a string interval and a misspelled logs key are caught
    schema = json.loads(SCHEMA_PATH.read_text())
    config = cloudwatch_agent_config(params)
    config["agent"]["metrics_collection_interval"] = "60"
    config["logs"]["logs_collected"]["file"] = config["logs"]["logs_collected"].pop("files")
    assert len(list(jsonschema.Draft4Validator(schema).iter_errors(config))) == 2


def test_agent_config_contents(params):
    config = cloudwatch_agent_config(params)
    assert config["agent"] == {"metrics_collection_interval": 60, "run_as_user": "root", "region": "eu-west-1"}
    metrics = config["metrics"]
    assert metrics["namespace"] == params.metric_namespace
    assert metrics["append_dimensions"] == {"InstanceId": "${aws:InstanceId}", "InstanceType": "${aws:InstanceType}"}
    assert [] in metrics["aggregation_dimensions"]  # the fleet-wide roll-up alarms use
    assert {"utilization_gpu", "utilization_memory", "memory_used", "memory_total", "temperature_gpu", "power_draw"} <= set(
        metrics["metrics_collected"]["nvidia_gpu"]["measurement"]
    )
    files = {f["file_path"]: f for f in config["logs"]["logs_collected"]["files"]["collect_list"]}
    assert files[params.training_log_path]["log_group_name"] == params.training_log_group
    assert files[params.training_log_path]["log_stream_name"] == "{instance_id}"
    assert files["/var/log/mlplatform-bootstrap.log"]["log_group_name"] == params.system_log_group
    system_streams = {f["log_stream_name"] for f in files.values() if f["log_group_name"] == params.system_log_group}
    assert system_streams == {"{instance_id}/bootstrap", "{instance_id}/gpu-metrics", "{instance_id}/spot-watcher"}


def test_service_log_files_match_the_units(script, params):
    # systemd appends each service's output to /var/log/mlplatform/<unit>.log; the agent ships those files.
    assert "StandardOutput=append:/var/log/mlplatform/$1.log" in script
    paths = {f["file_path"] for f in cloudwatch_agent_config(params)["logs"]["logs_collected"]["files"]["collect_list"]}
    assert {"/var/log/mlplatform/mlplatform-gpu-metrics.log", "/var/log/mlplatform/mlplatform-spot-watcher.log"} <= paths


def test_fleet_alarm_contract():
    assert FLEET_GPU_UTILIZATION_METRIC == "nvidia_smi_utilization_gpu"
    assert FLEET_GPU_UTILIZATION_METRIC.removeprefix("nvidia_smi_") in GPU_MEASUREMENTS
    assert FLEET_AGGREGATE_DIMENSIONS == {}


def test_interval_reaches_the_agent(params):
    assert cloudwatch_agent_config(replace(params, metrics_interval_s=30))["agent"]["metrics_collection_interval"] == 30


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("region", "us_east_1"),
        ("stack", "dev stack"),
        ("fleet_name", "gpu/fleet"),
        ("metric_namespace", "AWS/EC2"),
        ("metric_namespace", "has space"),
        ("metric_namespace", ""),
        ("training_log_group", "bad group!"),
        ("system_log_group", "x" * 513),
        ("artifacts_bucket", "Upper_Case"),
        ("artifacts_bucket", "ab"),
        ("checkpoint_dir", "relative/dir"),
        ("checkpoint_dir", "/"),
        ("checkpoint_dir", "/opt/$(reboot)"),
        ("checkpoint_hook", "x" * 513),
        ("checkpoint_hook", "echo hi\nMLP_HOOK\nreboot"),
        ("training_log_path", "/var/log/train ing/*.log"),
        ("hparams_prefix", "ml/hparams"),
        ("install_driver_if_missing", "yes"),
        ("metrics_interval_s", 45),
        ("metrics_interval_s", 0),
        ("metrics_interval_s", 7200),
        ("metrics_interval_s", 120),  # does not divide the capacity alarm's 300 s period
        ("metrics_interval_s", True),
        ("metrics_interval_s", "60"),
    ],
)
def test_bad_params_name_the_field(params, field, value):
    with pytest.raises(ValueError, match=field):
        replace(params, **{field: value})


@pytest.mark.parametrize("interval", [10, 30, 60, 300])
def test_allowed_intervals(params, interval):
    assert replace(params, metrics_interval_s=interval).metrics_interval_s == interval


def test_training_log_dir_stops_at_the_first_glob(params):
    assert replace(params, training_log_path="/data/logs/run-*/train.log").training_log_dir == "/data/logs"


def test_the_watcher_unit_waits_for_the_hook_and_the_final_sync(script, tmp_path):
    # GIVEN the rendered script's unit() and its calls, writing into a temporary folder
    from gpu_training.user_data import CHECKPOINT_HOOK_TIMEOUT_S, WATCHER_STOP_TIMEOUT_S
    func = re.search(r"^unit\(\) \{.*?^\}\n", script, re.S | re.M).group(0).replace("/etc/systemd/system", str(tmp_path))
    setting = re.search(r"^WATCHER_STOP_TIMEOUT_S=.*$", script, re.M).group(0)
    calls = [line for line in script.splitlines() if line.startswith("unit mlplatform-")]
    # WHEN bash runs them
    subprocess.run(["bash", "-c", "\n".join([setting, "PYTHON=/usr/bin/python3", func, *calls])], check=True)
    # THEN systemd gives the watcher time for the hook and an upload before it kills it at shutdown
    watcher = (tmp_path / "mlplatform-spot-watcher.service").read_text()
    assert f"TimeoutStopSec={WATCHER_STOP_TIMEOUT_S}\n" in watcher
    assert WATCHER_STOP_TIMEOUT_S >= CHECKPOINT_HOOK_TIMEOUT_S + 120
    assert "TimeoutStopSec=30\n" in (tmp_path / "mlplatform-gpu-metrics.service").read_text()
    assert "After=network-online.target" in watcher, "stopped before the network goes down"


def test_run_program_and_experiments_table_reach_the_instance(script, params):
    assert "training_run.py" in dict(INSTANCE_FILES)
    assert re.search(r"^EXPERIMENTS_TABLE=\$\{EXPERIMENTS_TABLE\}$", script, re.M)
    assert f"EXPERIMENTS_TABLE={params.experiments_table}" in script
    assert ">/usr/local/bin/mlplatform-training-run" in script
