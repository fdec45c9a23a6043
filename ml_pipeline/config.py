"""The ml-pipeline stack's config, read once and validated into one typed object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from shared.config_reader import ConfigError, ConfigReader
from shared.contracts import ML_PIPELINE_PROJECT
from shared.lambda_function import ARCHITECTURES, LOG_LEVELS
from shared.logs import RETENTION_DAYS
from shared.tagging import StackTags

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")


def _prefix_ok(value: str) -> bool:
    return bool(value) and value.endswith("/") and not value.startswith("/")


@dataclass(frozen=True)
class IngestSettings:
    raw_prefix: str
    quarantine_prefix: str
    shard_prefix: str
    target_size: int
    jpeg_quality: int
    max_input_mb: int
    max_megapixels: int
    min_dimension: int
    allowed_formats: tuple[str, ...]
    memory_mb: int
    architecture: str
    timeout_s: int
    batch_size: int
    batch_window_s: int
    max_concurrency: int
    reserved_concurrency: Optional[int]
    max_receive_count: int
    workers: int
    log_level: str


@dataclass(frozen=True)
class PipelineConfig:
    stack: str
    tags: StackTags
    raw_bucket_name: Optional[str]
    processed_bucket_name: Optional[str]
    artifacts_bucket_name: Optional[str]
    logs_bucket_name: Optional[str]
    raw_retention_days: int
    raw_infrequent_access_days: int
    raw_glacier_days: int
    access_log_retention_days: int
    noncurrent_version_days: int
    log_retention_days: int
    deletion_protection: bool
    alarm_emails: tuple[str, ...]
    gpu_training_stack: Optional[str]
    ingest: IngestSettings


def _ingest(reader: ConfigReader) -> IngestSettings:
    timeout = reader.integer("ingestTimeoutSeconds", 90, minimum=10, maximum=900)
    batch_size = reader.integer("ingestBatchSize", 50, minimum=1, maximum=10000)
    window = reader.integer("ingestBatchWindowSeconds", 5, minimum=0, maximum=300)
    if batch_size > 10 and window == 0:
        # AWS rejects an SQS event source mapping with a batch over 10 and no batching window.
        raise ConfigError(f"config {reader.key('ingestBatchWindowSeconds')}: must be >= 1 when "
                          f"{reader.key('ingestBatchSize')} is over 10 (got batch {batch_size}, window 0)")
    reserved = reader.integer("ingestReservedConcurrency", 0, minimum=0, maximum=1000)
    max_concurrency = reader.integer("ingestMaxConcurrency", 20, minimum=2, maximum=1000)
    if reserved and reserved < max_concurrency:
        raise ConfigError(f"config {reader.key('ingestReservedConcurrency')}: must be 0 (unset) or >= "
                          f"{reader.key('ingestMaxConcurrency')} ({max_concurrency}), or SQS batches get throttled")
    prefix_rule = dict(check=_prefix_ok, expected="a key prefix ending in / without a leading /")
    raw_prefix = reader.string("rawPrefix", "incoming/", **prefix_rule)
    quarantine_prefix = reader.string("quarantinePrefix", "quarantine/", **prefix_rule)
    if quarantine_prefix.startswith(raw_prefix) or raw_prefix.startswith(quarantine_prefix):
        # A quarantined copy under the ingest prefix would be ingested again, forever.
        raise ConfigError(f"config {reader.key('quarantinePrefix')}: must not overlap {reader.key('rawPrefix')} "
                          f"({quarantine_prefix!r} vs {raw_prefix!r})")
    return IngestSettings(
        raw_prefix=raw_prefix,
        quarantine_prefix=quarantine_prefix,
        shard_prefix=reader.string("shardPrefix", "shards/", **prefix_rule),
        target_size=reader.integer("trainingImageSize", 512, minimum=32, maximum=4096),
        # Pillow advises against quality above 95 and the function refuses it at start-up.
        jpeg_quality=reader.integer("jpegQuality", 90, minimum=50, maximum=95),
        max_input_mb=reader.integer("maxImageMb", 50, minimum=1, maximum=500),
        max_megapixels=reader.integer("maxImageMegapixels", 60, minimum=1, maximum=200),
        min_dimension=reader.integer("minImageDimension", 32, minimum=1, maximum=4096),
        allowed_formats=tuple(reader.string_list("allowedImageFormats", list(IMAGE_FORMATS), min_items=1,
                                                 item_check=lambda f: None if f in IMAGE_FORMATS else
                                                 f"{f!r} is not one of {', '.join(IMAGE_FORMATS)}")),
        memory_mb=reader.integer("ingestMemoryMb", 2048, minimum=512, maximum=10240),
        architecture=reader.string("ingestArchitecture", "arm64", choices=ARCHITECTURES),
        timeout_s=timeout,
        batch_size=batch_size,
        batch_window_s=window,
        max_concurrency=max_concurrency,
        reserved_concurrency=reserved or None,
        max_receive_count=reader.integer("ingestMaxReceiveCount", 5, minimum=1, maximum=1000),
        workers=reader.integer("ingestWorkers", 4, minimum=1, maximum=16),
        log_level=reader.string("ingestLogLevel", "INFO", choices=LOG_LEVELS),
    )


def load() -> PipelineConfig:
    reader = ConfigReader(pulumi.Config())
    stack = pulumi.get_stack()
    raw_ia = reader.integer("rawInfrequentAccessDays", 30, minimum=30, maximum=3650)
    raw_glacier = reader.integer("rawGlacierDays", 90, minimum=31, maximum=3650)
    raw_retention = reader.integer("rawRetentionDays", 365, minimum=1, maximum=36500)
    if not raw_ia < raw_glacier < raw_retention:
        raise ConfigError(f"config {reader.key('rawInfrequentAccessDays')} < {reader.key('rawGlacierDays')} < "
                          f"{reader.key('rawRetentionDays')} must hold; got {raw_ia}, {raw_glacier}, {raw_retention}")
    gpu_stack = reader.optional_string("gpuTrainingStack")
    if gpu_stack is not None and len(gpu_stack.split("/")) != 3:
        raise ConfigError(f"config {reader.key('gpuTrainingStack')}: must be <org>/gpu-training/<stack>; got {gpu_stack!r}")
    return PipelineConfig(
        stack=stack,
        tags=reader.stack_tags(ML_PIPELINE_PROJECT, stack),
        raw_bucket_name=reader.optional_string("rawBucketName"),
        processed_bucket_name=reader.optional_string("processedBucketName"),
        artifacts_bucket_name=reader.optional_string("artifactsBucketName"),
        logs_bucket_name=reader.optional_string("logsBucketName"),
        raw_retention_days=raw_retention,
        raw_infrequent_access_days=raw_ia,
        raw_glacier_days=raw_glacier,
        access_log_retention_days=reader.integer("accessLogRetentionDays", 365, minimum=1, maximum=3650),
        noncurrent_version_days=reader.integer("noncurrentVersionDays", 30, minimum=1, maximum=3650),
        log_retention_days=reader.integer("logRetentionDays", 30, allowed=RETENTION_DAYS),
        deletion_protection=reader.boolean("deletionProtection", False),
        alarm_emails=tuple(reader.string_list("alarmEmails", [], item_check=lambda e: None if "@" in e
                                              else f"{e!r} is not an e-mail address")),
        gpu_training_stack=gpu_stack,
        ingest=_ingest(reader),
    )
