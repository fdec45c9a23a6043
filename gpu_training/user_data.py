"""Render the gpu-training instances' user_data and their CloudWatch agent configuration.

Pure Python (no pulumi import) so the script can be rendered, linted and tested offline. The bash
template and the scripts that run on the instance live in ``gpu_training/instance/``; the scripts
travel inside the user_data as one gzip'd, base64'd tarball because plain text would not fit
EC2's 16 KiB user_data limit.
"""
from __future__ import annotations

import base64
import gzip
import io
import json
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gpu_training.metrics import GPU_MEASUREMENTS, INSTANCE_AGGREGATE_DIMENSION_NAMES, check_metrics_interval

INSTANCE_DIR = Path(__file__).resolve().parent / "instance"
TEMPLATE = INSTANCE_DIR / "user_data.sh.tpl"
# (file name, mode) of what is unpacked into /opt/mlplatform/ on the instance.
INSTANCE_FILES = (("mlp_common.py", 0o644), ("gpu_metrics.py", 0o755), ("spot_watcher.py", 0o755),
                  ("training_run.py", 0o755))
MAX_USER_DATA_BYTES = 16384  # EC2's limit on user_data before base64 encoding (here: after gzip)
# Only installed where the AMI's python3 lacks boto3; 1.35 is the last line supporting Python 3.8.
BOTO3_REQUIREMENT = "boto3==1.35.99"
BOOTSTRAP_LOG = "/var/log/mlplatform-bootstrap.log"
SERVICE_LOGS = {  # log file on the instance -> stream suffix in the system log group
    BOOTSTRAP_LOG: "bootstrap",
    "/var/log/mlplatform/mlplatform-gpu-metrics.log": "gpu-metrics",
    "/var/log/mlplatform/mlplatform-spot-watcher.log": "spot-watcher",
}

CHECKPOINT_HOOK_MAX_CHARS = 512  # the hook travels inside user_data (16 KB gzip'd, with everything else)
CHECKPOINT_HOOK_TIMEOUT_S = 60
# systemd's stop timeout of the watcher: the hook, then the final checkpoint sync, must finish before
# systemd kills it. EC2 gives a Spot instance two minutes, but a fleet that terminates an instance
# itself (scale-in, replacement, stack destroy) waits for a clean OS shutdown.
CHECKPOINT_SYNC_BUDGET_S = 240
WATCHER_STOP_TIMEOUT_S = CHECKPOINT_HOOK_TIMEOUT_S + CHECKPOINT_SYNC_BUDGET_S


# An SSM parameter path (config load checks hparamsPrefix against it too).
HPARAMS_PREFIX_PATTERN = r"/[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,1000}"
_PATTERNS = {
    "region": (r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", "an AWS region such as us-east-1"),
    "stack": (r"[A-Za-z0-9_.-]{1,100}", "1-100 of A-Z a-z 0-9 _ . -"),
    "fleet_name": (r"[A-Za-z0-9_.-]{1,128}", "1-128 of A-Z a-z 0-9 _ . - (an S3 key part and a dimension value)"),
    "metric_namespace": (
        r"(?!AWS/)[A-Za-z0-9_.#:/-]{1,255}",
        "1-255 of A-Z a-z 0-9 _ . # : / -, not starting with AWS/ (no spaces: it goes unquoted into the env file)",
    ),
    "training_log_group": (r"[A-Za-z0-9_.#/-]{1,512}", "a CloudWatch log group name: 1-512 of A-Z a-z 0-9 _ . # / -"),
    "system_log_group": (r"[A-Za-z0-9_.#/-]{1,512}", "a CloudWatch log group name: 1-512 of A-Z a-z 0-9 _ . # / -"),
    "experiments_table": (r"[A-Za-z0-9_.-]{3,255}", "a DynamoDB table name: 3-255 of A-Z a-z 0-9 _ . -"),
    "artifacts_bucket": (
        r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        "an S3 bucket name: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit",
    ),
    "checkpoint_dir": (r"/[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,254}", "an absolute path of A-Z a-z 0-9 _ . / -, not /"),
    "training_log_path": (r"/[A-Za-z0-9_.*?/-]{1,1023}", "an absolute path or glob of A-Z a-z 0-9 _ . * ? / -"),
    "hparams_prefix": (HPARAMS_PREFIX_PATTERN, "an SSM parameter path such as /ml/hparams"),
}


def check_checkpoint_hook(hook: object) -> str | None:
    """The one check of the checkpoint hook (config load and UserDataParams both call it)."""
    if not isinstance(hook, str) or len(hook) > CHECKPOINT_HOOK_MAX_CHARS or "\0" in hook \
            or "MLP_HOOK" in hook.splitlines():
        return (f"must be shell of at most {CHECKPOINT_HOOK_MAX_CHARS} characters without a line 'MLP_HOOK' "
                f"(its heredoc delimiter); got {len(hook) if isinstance(hook, str) else type(hook).__name__}"
                " characters; longer logic belongs in a script on the image")
    return None


@dataclass(frozen=True)
class UserDataParams:
    """Everything the bootstrap needs; validated here so a bad value fails at `pulumi preview`."""

    region: str
    stack: str  # e.g. "dev"
    fleet_name: str  # physical name prefix of the fleet; the FleetName dimension and the S3 prefix
    metric_namespace: str  # e.g. "MLPlatform/GPUTraining/dev"; one per stack (the roll-up has no dimensions)
    training_log_group: str  # gets training_log_path, one stream per instance id
    system_log_group: str  # gets the bootstrap, collector and watcher logs
    artifacts_bucket: str  # checkpoints go to s3://{artifacts_bucket}/checkpoints/{fleet_name}/{instance_id}/
    experiments_table: str  # training runs started through the run documents are recorded here
    checkpoint_dir: str = "/opt/ml/checkpoints"
    checkpoint_hook: str = ""  # shell run on an interruption notice BEFORE the sync (at most 60 s); "" = sync only
    training_log_path: str = "/var/log/training/*.log"
    hparams_prefix: str = "/ml/hparams"  # SSM path prefix, exported to the trainer as HPARAMS_PREFIX
    install_driver_if_missing: bool = True
    metrics_interval_s: int = 60  # one of metrics.METRICS_INTERVALS_S

    def __post_init__(self) -> None:
        for field, (pattern, allowed) in _PATTERNS.items():
            value = getattr(self, field)
            if not isinstance(value, str) or not re.fullmatch(pattern, value):
                raise ValueError(f"UserDataParams.{field}={value!r} is invalid: expected {allowed}")
        if self.checkpoint_dir.rstrip("/") in ("", "/"):
            raise ValueError("UserDataParams.checkpoint_dir must not be /")
        hook = self.checkpoint_hook
        problem = check_checkpoint_hook(hook)
        if problem:
            raise ValueError(f"UserDataParams.checkpoint_hook {problem}")
        if not isinstance(self.install_driver_if_missing, bool):
            raise ValueError("UserDataParams.install_driver_if_missing must be a bool")
        problem = check_metrics_interval(self.metrics_interval_s)
        if problem:
            raise ValueError(f"UserDataParams.metrics_interval_s={problem}")

    @property
    def training_log_dir(self) -> str:
        """The fixed directory part of training_log_path, created at boot so the trainer can write there."""
        parts = []
        for part in self.training_log_path.split("/")[1:-1]:
            if "*" in part or "?" in part:
                break
            parts.append(part)
        return "/" + "/".join(parts)


def cloudwatch_agent_config(p: UserDataParams) -> dict:
    """The CloudWatch agent configuration (the agent runs as root: it reads nvidia-smi and root's logs)."""
    system_logs = [
        {"file_path": path, "log_group_name": p.system_log_group, "log_stream_name": "{instance_id}/" + suffix}
        for path, suffix in SERVICE_LOGS.items()
    ]
    return {
        "agent": {"metrics_collection_interval": p.metrics_interval_s, "run_as_user": "root", "region": p.region},
        "metrics": {
            "namespace": p.metric_namespace,
            # Global append_dimensions also drop the agent's "host" dimension.
            "append_dimensions": {"InstanceId": "${aws:InstanceId}", "InstanceType": "${aws:InstanceType}"},
            # []: one series per metric with no dimensions, merged across the fleet by CloudWatch
            # (what alarms use). ["InstanceId"]: all GPUs of one instance.
            "aggregation_dimensions": [[], list(INSTANCE_AGGREGATE_DIMENSION_NAMES)],
            "metrics_collected": {
                "nvidia_gpu": {"measurement": list(GPU_MEASUREMENTS)},
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/"]},
            },
        },
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": p.training_log_path,
                            "log_group_name": p.training_log_group,
                            "log_stream_name": "{instance_id}",
                        },
                        *system_logs,
                    ]
                }
            }
        },
    }


def instance_files_tarball() -> bytes:
    """The instance scripts as a reproducible .tar.gz (fixed mtime, owner and order)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT, compresslevel=9) as tar:
        for name, mode in INSTANCE_FILES:
            data = (INSTANCE_DIR / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw[:4] + b"\0\0\0\0" + raw[8:]  # zero the gzip header's timestamp


def render_user_data(p: UserDataParams) -> str:
    """The plain bash user_data (the caller base64-encodes it). Raises ValueError when too big."""
    params = {
        "REGION": p.region,
        "STACK": p.stack,
        "FLEET_NAME": p.fleet_name,
        "METRIC_NAMESPACE": p.metric_namespace,
        "TRAINING_LOG_GROUP": p.training_log_group,
        "ARTIFACTS_BUCKET": p.artifacts_bucket,
        "EXPERIMENTS_TABLE": p.experiments_table,
        "CHECKPOINT_DIR": p.checkpoint_dir,
        "HAS_CHECKPOINT_HOOK": "1" if p.checkpoint_hook.strip() else "0",
        "TRAINING_LOG_DIR": p.training_log_dir,
        "HPARAMS_PREFIX": p.hparams_prefix,
        "INSTALL_DRIVER_IF_MISSING": "1" if p.install_driver_if_missing else "0",
        "METRICS_INTERVAL_S": str(p.metrics_interval_s),
        "HOOK_TIMEOUT_S": str(CHECKPOINT_HOOK_TIMEOUT_S),
        "WATCHER_STOP_TIMEOUT_S": str(WATCHER_STOP_TIMEOUT_S),
        "BOTO3_REQUIREMENT": BOTO3_REQUIREMENT,
        "CWAGENT_CONFIG": json.dumps(cloudwatch_agent_config(p), separators=(",", ":")),
    }
    assignments = "\n".join(f"{k}={shlex.quote(v)}" for k, v in params.items())
    # ${aws:InstanceId} in the agent config is the agent's placeholder, not a bash expansion.
    directive = "# shellcheck disable=SC2016 # ${aws:...} are agent placeholders"
    assignments = assignments.replace("\nCWAGENT_CONFIG=", f"\n{directive}\nCWAGENT_CONFIG=")
    blob = base64.b64encode(instance_files_tarball()).decode()
    slots = {"PARAMS": assignments, "HOOK": p.checkpoint_hook.strip("\n"), "FILES": blob}
    # One pass, so text inside the hook is never taken for a slot.
    script = re.sub(r"#@@(PARAMS|HOOK|FILES)@@", lambda m: slots[m.group(1)], TEMPLATE.read_text())
    size = len(compress(script))
    if size > MAX_USER_DATA_BYTES:
        raise ValueError(f"rendered user_data is {size} bytes gzip'd; EC2 allows {MAX_USER_DATA_BYTES}")
    return script


def compress(script: str) -> bytes:
    """What the launch template carries: cloud-init recognises gzip'd user_data and unpacks it, so
    EC2's 16 KB limit applies to these bytes. Reproducible (no timestamp in the header)."""
    return gzip.compress(script.encode(), compresslevel=9, mtime=0)
