"""The gpu-training stack's config, read once and validated into one typed object."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import pulumi

from gpu_training.metrics import METRICS_INTERVALS_S
from gpu_training.storage import GLACIER_CLASSES
from gpu_training.user_data import HPARAMS_PREFIX_PATTERN, check_checkpoint_hook
from shared import budget as budget_settings
from shared.config_reader import ConfigError, ConfigReader, check_bucket_name, check_region
from shared.contracts import GPU_TRAINING_PROJECT
from shared.logs import RETENTION_DAYS
from shared.tagging import StackTags

DLAMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
# x86-64 NVIDIA families; g4ad has AMD GPUs and g5g is Arm, so the x86-64 AMI cannot serve them.
_NVIDIA_X86_FAMILY = re.compile(r"^(p[2-6]|g[3-7]|gr6)[a-z-]*$")
_NOT_NVIDIA_X86 = ("g4ad", "g5g")


@lru_cache(maxsize=1)
def _ec2_instance_types() -> frozenset[str]:
    # botocore's EC2 model lists every instance type the API accepts; it ships with boto3.
    import botocore.session
    shape = botocore.session.get_session().get_service_model("ec2").shape_for("InstanceType")
    return frozenset(shape.enum)


def check_gpu_instance_type(value: str) -> Optional[str]:
    if value not in _ec2_instance_types():
        return f"{value!r} is not an EC2 instance type"
    family = value.split(".")[0]
    if not _NVIDIA_X86_FAMILY.match(family) or family in _NOT_NVIDIA_X86:
        return f"{value!r} is not an x86-64 NVIDIA GPU instance type (p3, p4d, p5, g5, g6, ...)"
    return None


@dataclass(frozen=True)
class HyperParameters:
    learning_rate: float
    batch_size: int
    epochs: int

    def as_strings(self) -> dict[str, str]:
        return {"learning_rate": repr(self.learning_rate), "batch_size": str(self.batch_size), "epochs": str(self.epochs)}


@dataclass(frozen=True)
class GpuTrainingConfig:
    stack: str
    tags: StackTags
    # network
    vpc_cidr: ipaddress.IPv4Network
    nat_mode: str
    interface_endpoints: bool
    # fleet
    instance_types: tuple[str, ...]
    target_capacity: int
    ami_id: Optional[str]
    ami_parameter: str
    ami_parameter_version: Optional[int]
    root_volume_gb: int
    root_device_name: str
    rebalance_termination_delay_s: int
    checkpoint_dir: str
    checkpoint_hook: str
    install_driver_if_missing: bool
    metrics_interval_s: int
    # storage: bucket names may hold {account} and {region}, filled in at deploy
    training_data_bucket_name: str
    artifacts_bucket_name: str
    read_only_bucket_names: tuple[str, ...]
    glacier_after_days: int
    glacier_storage_class: str  # the S3 storage class, e.g. GLACIER_IR
    noncurrent_version_days: int
    deletion_protection: bool
    # monitoring
    log_retention_days: int
    low_utilization_percent: float
    alarm_emails: tuple[str, ...]
    budget: budget_settings.BudgetSettings
    # parameters
    hparams_prefix: str
    hyperparameters: HyperParameters

    @property
    def image_pinned(self) -> bool:
        """An AMI id or a parameter version: the image changes only when config does."""
        return bool(self.ami_id or self.ami_parameter_version)


def _hyperparameters(reader: ConfigReader) -> HyperParameters:
    raw = reader.mapping("hyperparameters", {"learning_rate": "0.001", "batch_size": "64", "epochs": "20"})
    unknown = set(raw) - {"learning_rate", "batch_size", "epochs"}
    if unknown:
        raise ConfigError(f"config {reader.key('hyperparameters')}: unknown keys {sorted(unknown)}; "
                          "allowed: learning_rate, batch_size, epochs")
    try:
        hp = HyperParameters(float(raw["learning_rate"]), int(raw["batch_size"]), int(raw["epochs"]))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"config {reader.key('hyperparameters')}: needs learning_rate (number), batch_size and "
                          f"epochs (whole numbers): {exc}") from None
    if not 0 < hp.learning_rate < 10 or hp.batch_size < 1 or hp.epochs < 1:
        raise ConfigError(f"config {reader.key('hyperparameters')}: learning_rate must be in (0, 10), batch_size "
                          f"and epochs >= 1; got {raw}")
    return hp


def _bucket_name(reader: ConfigReader, key: str, default_stem: str) -> str:
    """The configured name, else the default, which appends account and region to be globally unique."""
    default = default_stem + "-{account}-{region}"
    return reader.bucket_name(key, default_template=default) or default


def _check_prefix(value: str) -> bool:
    # The same pattern the instance bootstrap accepts (user_data.py), plus what SSM refuses: reserved roots,
    # empty levels (PutParameter's sub-paths are letters, digits and . - _) and more than 15 levels in a
    # parameter's name (the prefix, then the hyperparameter's own level).
    return (re.fullmatch(HPARAMS_PREFIX_PATTERN, value) is not None and not value.endswith("/")
            and not value.lower().startswith(("/aws", "/ssm")) and "//" not in value and value.count("/") <= 14)


def warn_about_volta(instance_types: tuple[str, ...], ami_id: Optional[str]) -> Optional[str]:
    """p3 (Volta) alone on the default Deep Learning AMI: its open-source driver modules do not drive
    Volta. With a newer type beside it (the prod file lists g5/g6) the fleet has a supported fallback."""
    volta = [t for t in instance_types if t.startswith("p3")]
    if volta and len(volta) == len(instance_types) and ami_id is None:
        return (f"{', '.join(volta)}: current Deep Learning AMIs do not support Volta GPUs; each boot installs a "
                "driver that does and reboots once. Set amiId to an image with an R580-or-older proprietary "
                "driver, or add g5/g6 types to instanceTypes (see README).")
    return None


def load() -> GpuTrainingConfig:
    check_region()
    reader = ConfigReader(pulumi.Config())
    stack = pulumi.get_stack()
    ami_id = reader.optional_string("amiId")
    if ami_id is not None and not (ami_id.startswith("ami-") and len(ami_id) in (12, 21)):
        raise ConfigError(f"config {reader.key('amiId')}: must look like ami-0123456789abcdef0; got {ami_id!r}")
    instance_types = tuple(reader.string_list("instanceTypes", ["p3.2xlarge"], min_items=1,
                                              item_check=check_gpu_instance_type))
    warning = warn_about_volta(instance_types, ami_id)
    if warning:
        pulumi.log.warn(warning)
    checkpoint_dir = reader.string("checkpointDir", "/opt/ml/checkpoints", check=lambda v: v.startswith("/"),
                                   expected="an absolute path")
    checkpoint_hook = reader.string("checkpointHook", "", expected="shell run before a checkpoint sync, at most 512 characters")
    hook_problem = check_checkpoint_hook(checkpoint_hook)
    if hook_problem:
        raise reader.error("checkpointHook", hook_problem)
    ami_parameter_version = reader.integer("amiParameterVersion", 0, minimum=0, maximum=10**9) or None
    if ami_id and ami_parameter_version:
        raise ConfigError(f"config {reader.key('amiParameterVersion')}: set amiId or amiParameterVersion, not both")
    alarm_emails = tuple(reader.string_list("alarmEmails", [], item_check=lambda e: None if "@" in e
                                            else f"{e!r} is not an e-mail address"))
    return GpuTrainingConfig(
        stack=stack,
        tags=reader.stack_tags(GPU_TRAINING_PROJECT, stack),
        vpc_cidr=reader.cidr("vpcCidr", "10.20.0.0/16", min_prefix=16, max_prefix=22),
        nat_mode=reader.string("natMode", "single", choices=("single", "per-az")),
        interface_endpoints=reader.boolean("interfaceEndpoints", False),
        instance_types=instance_types,
        target_capacity=reader.integer("targetCapacity", 6, minimum=1, maximum=100),
        ami_id=ami_id,
        ami_parameter=reader.string("amiParameter", DLAMI_PARAMETER,
                                    check=lambda v: v.startswith("/aws/service/") and ":" not in v,
                                    expected="an AWS public SSM parameter path (/aws/service/...; the version "
                                             "goes in amiParameterVersion)"),
        ami_parameter_version=ami_parameter_version,
        root_volume_gb=reader.integer("rootVolumeGb", 200, minimum=100, maximum=16384),
        root_device_name=reader.string("rootDeviceName", "/dev/sda1", check=lambda v: v.startswith("/dev/"),
                                       expected="a device name such as /dev/sda1"),
        rebalance_termination_delay_s=reader.integer("rebalanceTerminationDelaySeconds", 600, minimum=120, maximum=7200),
        checkpoint_dir=checkpoint_dir,
        checkpoint_hook=checkpoint_hook,
        install_driver_if_missing=reader.boolean("installDriverIfMissing", True),
        metrics_interval_s=reader.integer("metricsIntervalSeconds", 60, allowed=METRICS_INTERVALS_S),
        training_data_bucket_name=_bucket_name(reader, "trainingDataBucketName", f"ml-training-data-{stack}"),
        artifacts_bucket_name=_bucket_name(reader, "artifactsBucketName", f"ml-model-artifacts-{stack}"),
        read_only_bucket_names=tuple(reader.string_list("readOnlyBucketNames", [], item_check=check_bucket_name)),
        glacier_after_days=reader.integer("glacierAfterDays", 30, minimum=1, maximum=3650),
        glacier_storage_class=GLACIER_CLASSES[reader.string("glacierStorageClass", "instant",
                                                            choices=tuple(GLACIER_CLASSES))],
        noncurrent_version_days=reader.integer("noncurrentVersionDays", 30, minimum=1, maximum=3650),
        deletion_protection=reader.boolean("deletionProtection", False),
        log_retention_days=reader.integer("logRetentionDays", 30, allowed=RETENTION_DAYS),
        low_utilization_percent=reader.number("lowUtilizationPercent", 20.0, minimum=0.0, maximum=100.0),
        alarm_emails=alarm_emails,
        budget=budget_settings.load_settings(reader, alarm_emails),
        hparams_prefix=reader.string("hparamsPrefix", f"/ml/hparams/{stack}", check=_check_prefix,
                                     expected="an SSM path like /ml/hparams/dev (leading /, no trailing / or //, "
                                              "not /aws, at most 14 levels)"),
        hyperparameters=_hyperparameters(reader),
    )
