"""The training workflow's settings: data checks, jobs, tuning, approval and schedule, read from config once."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.config_reader import ConfigError, ConfigReader

# Contract 6: the hyperparameters train.py reads (all passed as strings).
HYPERPARAMETERS = ("epochs", "batch_size", "learning_rate", "checkpoint_steps", "architecture", "image_size",
                   "max_steps")
DEFAULT_HYPERPARAMETERS = {"epochs": "10", "batch_size": "64", "learning_rate": "0.001", "checkpoint_steps": "200",
                           "architecture": "small"}
DEFAULT_TUNING_RANGES = {
    "learning_rate": {"type": "continuous", "min": 0.0001, "max": 0.1, "scaling": "Logarithmic"},
    "batch_size": {"type": "categorical", "values": ["32", "64", "128"]},
}
RANGE_TYPES = ("continuous", "integer", "categorical")
SCALING = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
# SageMaker's model package group name pattern (also used for the experiment id and job names).
MODEL_NAME = re.compile(r"^[a-z0-9](-?[a-z0-9]){0,39}$")
SCHEDULE = re.compile(r"^(cron|rate)\(.+\)$")


@dataclass(frozen=True)
class TrainingSettings:
    model_name: str
    window_days: int
    min_images: int
    min_class_share: float
    max_quarantine_rate: float
    validation_share: float
    test_share: float
    framework_version: str
    python_version: str
    instance_type: str
    instance_count: int
    volume_gb: int
    max_runtime_s: int
    max_wait_s: int
    spot: bool
    hyperparameters: dict[str, str]
    tuning_max_jobs: int
    tuning_max_parallel_jobs: int
    tuning_ranges: dict[str, dict[str, Any]]
    evaluation_instance_type: str
    evaluation_max_runtime_s: int
    approval_threshold: float
    approval_tolerance: float
    schedule: str
    schedule_timezone: str
    schedule_enabled: bool
    network: str

    @property
    def gpu(self) -> bool:
        return self.instance_type.split(".")[1][0] in "gp"


def _hyperparameters(reader: ConfigReader) -> dict[str, str]:
    raw = reader.mapping("trainingHyperparameters", DEFAULT_HYPERPARAMETERS)
    unknown = sorted(set(raw) - set(HYPERPARAMETERS))
    if unknown:
        raise ConfigError(f"config {reader.key('trainingHyperparameters')}: unknown {unknown}; "
                          f"train.py reads {', '.join(HYPERPARAMETERS)}")
    merged = {**DEFAULT_HYPERPARAMETERS, **{k: str(v) for k, v in raw.items()}}
    return dict(sorted(merged.items()))


def _tuning_ranges(reader: ConfigReader, fixed: dict[str, str]) -> dict[str, dict[str, Any]]:
    key = reader.key("tuningRanges")
    ranges = reader.mapping("tuningRanges", DEFAULT_TUNING_RANGES)
    if not ranges:
        raise ConfigError(f"config {key}: needs at least one range")
    for name, spec in ranges.items():
        if name not in HYPERPARAMETERS or not isinstance(spec, dict) or spec.get("type") not in RANGE_TYPES:
            raise ConfigError(f"config {key}: {name!r} must be one of {', '.join(HYPERPARAMETERS)} with "
                              f"type one of {', '.join(RANGE_TYPES)}; got {spec!r}")
        if spec["type"] == "categorical":
            if not spec.get("values") or not isinstance(spec["values"], list):
                raise ConfigError(f"config {key}: {name} (categorical) needs a non-empty 'values' list")
        else:
            lo, hi = spec.get("min"), spec.get("max")
            if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)) or lo >= hi:
                raise ConfigError(f"config {key}: {name} needs numbers min < max; got {spec!r}")
            if spec.get("scaling", "Auto") not in SCALING:
                raise ConfigError(f"config {key}: {name} scaling must be one of {', '.join(SCALING)}")
            if spec.get("scaling") == "Logarithmic" and lo <= 0:
                raise ConfigError(f"config {key}: {name} with Logarithmic scaling needs min > 0")
    return ranges


def load(reader: ConfigReader) -> TrainingSettings:
    max_runtime = reader.integer("trainingMaxRuntimeSeconds", 4 * 3600, minimum=600, maximum=28 * 24 * 3600)
    spot = reader.boolean("trainingSpot", True)
    max_wait = reader.integer("trainingMaxWaitSeconds", 2 * max_runtime, minimum=600, maximum=28 * 24 * 3600)
    if spot and max_wait < max_runtime:
        # CreateTrainingJob rejects managed Spot with MaxWaitTimeInSeconds below MaxRuntimeInSeconds.
        raise ConfigError(f"config {reader.key('trainingMaxWaitSeconds')}: must be >= "
                          f"{reader.key('trainingMaxRuntimeSeconds')} ({max_runtime}) with Spot training; got {max_wait}")
    validation_share = reader.number("trainingValidationShare", 0.1, minimum=0.01, maximum=0.4)
    test_share = reader.number("trainingTestShare", 0.1, minimum=0.01, maximum=0.4)
    hyperparameters = _hyperparameters(reader)
    tuning_max_jobs = reader.integer("tuningMaxJobs", 8, minimum=1, maximum=500)
    tuning_parallel = reader.integer("tuningMaxParallelJobs", 2, minimum=1, maximum=100)
    if tuning_parallel > tuning_max_jobs:
        raise ConfigError(f"config {reader.key('tuningMaxParallelJobs')}: must be <= {reader.key('tuningMaxJobs')} "
                          f"({tuning_max_jobs}); got {tuning_parallel}")
    instance_type = reader.string("trainingInstanceType", "ml.g5.xlarge",
                                  check=lambda v: bool(re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", v)),
                                  expected="a SageMaker training instance type such as ml.g5.xlarge")
    return TrainingSettings(
        model_name=reader.string("modelName", "image-classifier", check=MODEL_NAME.match,
                                 expected="lower-case letters, digits and single hyphens, at most 40 characters"),
        window_days=reader.integer("trainingWindowDays", 7, minimum=1, maximum=90),
        min_images=reader.integer("minTrainingImages", 1000, minimum=1, maximum=100_000_000),
        min_class_share=reader.number("minClassShare", 0.02, minimum=0.0, maximum=0.5),
        max_quarantine_rate=reader.number("maxQuarantineRate", 0.2, minimum=0.0, maximum=1.0),
        validation_share=validation_share,
        test_share=test_share,
        framework_version=reader.string("pytorchVersion", "2.5.1", check=lambda v: bool(re.fullmatch(r"\d+\.\d+(\.\d+)?", v)),
                                        expected="a PyTorch version of the SageMaker containers, e.g. 2.5.1"),
        python_version=reader.string("pytorchPythonVersion", "py311", check=lambda v: bool(re.fullmatch(r"py3\d+", v)),
                                     expected="the containers' Python tag, e.g. py311"),
        instance_type=instance_type,
        instance_count=reader.integer("trainingInstanceCount", 1, minimum=1, maximum=16),
        volume_gb=reader.integer("trainingVolumeGb", 50, minimum=1, maximum=16384),
        max_runtime_s=max_runtime,
        max_wait_s=max_wait,
        spot=spot,
        hyperparameters=hyperparameters,
        tuning_max_jobs=tuning_max_jobs,
        tuning_max_parallel_jobs=tuning_parallel,
        tuning_ranges=_tuning_ranges(reader, hyperparameters),
        evaluation_instance_type=reader.string("evaluationInstanceType", "ml.m5.xlarge",
                                               check=lambda v: bool(re.fullmatch(r"ml\.[a-z0-9]+\.[a-z0-9]+", v)),
                                               expected="a SageMaker processing instance type such as ml.m5.xlarge"),
        evaluation_max_runtime_s=reader.integer("evaluationMaxRuntimeSeconds", 3600, minimum=300, maximum=5 * 24 * 3600),
        approval_threshold=reader.number("approvalAccuracyThreshold", 0.8, minimum=0.0, maximum=1.0),
        approval_tolerance=reader.number("approvalTolerance", 0.01, minimum=0.0, maximum=1.0),
        schedule=reader.string("trainingSchedule", "cron(0 3 * * ? *)", check=SCHEDULE.match,
                               expected="an EventBridge Scheduler cron(...) or rate(...) expression"),
        schedule_timezone=reader.string("trainingScheduleTimezone", "UTC",
                                        check=lambda v: bool(re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+)*", v)),
                                        expected="an IANA time zone such as UTC or Europe/Berlin"),
        schedule_enabled=reader.boolean("trainingScheduleEnabled", True),
        network=reader.string("trainingNetwork", "own", choices=("own", "gpu-training")),
    )
