"""Serving's settings: the endpoint's variants and instances, deployment guardrails, autoscaling and the API."""
from __future__ import annotations

import re
from dataclasses import dataclass

from shared.config_reader import ConfigError, ConfigReader
from shared.lambda_function import ARCHITECTURES, LOG_LEVELS

VARIANTS = ("champion", "challenger")
# Instance families whose volumes are local NVMe: SageMaker rejects an endpoint config KmsKeyId for
# them (the local storage is encrypted by the hardware), so the volume key is left out there. The named
# families, and every family with a "d" among its letters after the generation (m5d, c6gd, r6id, m5dn),
# as the training workflow's rule (ml_pipeline/training/definition.py).
LOCAL_STORAGE_FAMILIES = ("g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "inf2", "trn1",
                          "trn1n")
_LOCAL_STORAGE_LETTERS = re.compile(r"[a-z]+\d+[a-z]*d[a-z]*")


def _instance_type_ok(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 3 and parts[0] == "ml" and all(parts[1:])


def has_local_storage(instance_type: str) -> bool:
    family = instance_type.split(".")[1]
    return family in LOCAL_STORAGE_FAMILIES or bool(_LOCAL_STORAGE_LETTERS.fullmatch(family))


# The most instances the inference container takes in one request (model/inference.py's MAX_INSTANCES; a
# test holds the two equal): the consumer's endpoint calls stay within it.
CONTAINER_MAX_INSTANCES = 64


@dataclass(frozen=True)
class ServingSettings:
    model_name: str
    instance_type: str
    instance_count: int
    challenger_weight: float
    data_capture_percent: int
    canary_percent: int
    bake_seconds: int
    termination_wait_seconds: int
    max_update_seconds: int
    poll_seconds: int
    max_polls: int
    autoscaling_min: int
    autoscaling_max: int
    invocations_per_instance: int
    scale_in_cooldown_s: int
    scale_out_cooldown_s: int
    error_rate_alarm_percent: float
    latency_alarm_ms: int
    function_architecture: str
    predict_memory_mb: int
    predict_timeout_s: int
    max_request_kb: int
    result_ttl_hours: int
    stream_batch_size: int
    invoke_batch_size: int
    stream_batch_window_s: int
    stream_max_retries: int
    stream_max_record_age_s: int
    api_rate_limit: int
    api_burst_limit: int
    api_quota_per_day: int
    log_level: str

    @property
    def volume_kms(self) -> bool:
        return not has_local_storage(self.instance_type)


def load(reader: ConfigReader, *, production: bool, model_name: str) -> ServingSettings:
    """``model_name`` is the training settings' (config modelName): one home for the name."""
    """``production``: the stack serves real traffic (environment prod): two instances per variant at least,
    so one instance failing or being patched leaves the variant serving."""
    count = reader.integer("endpointInstanceCount", 2 if production else 1, minimum=1, maximum=20)
    if production and count < 2:
        raise ConfigError(f"config {reader.key('endpointInstanceCount')}: must be >= 2 per variant in production "
                          f"(got {count})")
    auto_min = reader.integer("endpointMinInstances", count, minimum=1, maximum=100)
    auto_max = reader.integer("endpointMaxInstances", max(count, 4), minimum=1, maximum=100)
    if not auto_min <= count <= auto_max:
        raise ConfigError(f"config {reader.key('endpointMinInstances')} <= {reader.key('endpointInstanceCount')} <= "
                          f"{reader.key('endpointMaxInstances')} must hold; got {auto_min}, {count}, {auto_max}")
    if production and auto_min < 2:
        raise ConfigError(f"config {reader.key('endpointMinInstances')}: must be >= 2 in production (got {auto_min})")
    bake = reader.integer("deployBakeSeconds", 600, minimum=0, maximum=3600)
    termination = reader.integer("deployTerminationWaitSeconds", 300, minimum=0, maximum=3600)
    max_update = reader.integer("deployMaxSeconds", 3600, minimum=600, maximum=28800)
    poll = reader.integer("deployPollSeconds", 30, minimum=5, maximum=300)
    window = reader.integer("asyncBatchWindowSeconds", 1, minimum=0, maximum=300)
    return ServingSettings(
        model_name=model_name,
        instance_type=reader.string("endpointInstanceType", "ml.m5.large", check=_instance_type_ok,
                                    expected="a SageMaker hosting instance type such as ml.m5.large"),
        instance_count=count,
        challenger_weight=reader.number("challengerInitialWeight", 0.0, minimum=0.0, maximum=0.5),
        data_capture_percent=reader.integer("dataCapturePercent", 20, minimum=0, maximum=100),
        canary_percent=reader.integer("deployCanaryPercent", 10, minimum=1, maximum=50),
        bake_seconds=bake,
        termination_wait_seconds=termination,
        max_update_seconds=max_update,
        poll_seconds=poll,
        # Creation plus a full blue/green update (canary, bake, shift, termination wait), then a margin.
        max_polls=(max_update + bake + termination + 1800) // poll + 1,
        autoscaling_min=auto_min,
        autoscaling_max=auto_max,
        invocations_per_instance=reader.integer("endpointInvocationsPerInstance", 100, minimum=1, maximum=100000),
        scale_in_cooldown_s=reader.integer("endpointScaleInCooldownSeconds", 300, minimum=0, maximum=3600),
        scale_out_cooldown_s=reader.integer("endpointScaleOutCooldownSeconds", 60, minimum=0, maximum=3600),
        error_rate_alarm_percent=reader.number("endpointErrorRateAlarmPercent", 5.0, minimum=0.1, maximum=100.0),
        latency_alarm_ms=reader.integer("endpointLatencyAlarmMs", 1000, minimum=10, maximum=60000),
        function_architecture=reader.string("servingArchitecture", "arm64", choices=ARCHITECTURES),
        predict_memory_mb=reader.integer("predictMemoryMb", 512, minimum=128, maximum=10240),
        predict_timeout_s=reader.integer("predictTimeoutSeconds", 29, minimum=3, maximum=29),
        max_request_kb=reader.integer("maxRequestKb", 5120, minimum=1, maximum=6000),
        result_ttl_hours=reader.integer("asyncResultTtlHours", 24, minimum=1, maximum=720),
        stream_batch_size=reader.integer("asyncBatchSize", 100, minimum=1, maximum=10000),
        invoke_batch_size=reader.integer("asyncInvokeBatchSize", CONTAINER_MAX_INSTANCES, minimum=1,
                                         maximum=CONTAINER_MAX_INSTANCES),
        stream_batch_window_s=window,
        stream_max_retries=reader.integer("asyncMaxRetries", 3, minimum=0, maximum=10000),
        stream_max_record_age_s=reader.integer("asyncMaxRecordAgeSeconds", 3600, minimum=60, maximum=604800),
        api_rate_limit=reader.integer("apiRateLimit", 100, minimum=1, maximum=10000),
        api_burst_limit=reader.integer("apiBurstLimit", 200, minimum=1, maximum=5000),
        api_quota_per_day=reader.integer("apiQuotaPerDay", 1000000, minimum=1, maximum=100000000),
        log_level=reader.string("servingLogLevel", "INFO", choices=LOG_LEVELS),
    )
