"""The ml-pipeline stack's config: each area's settings, composed into one typed, validated object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from ml_pipeline.ingestion import settings as ingestion_settings
from ml_pipeline.lake import settings as lake_settings
from ml_pipeline.serving import settings as serving_settings
from shared.config_reader import ConfigError, ConfigReader
from shared.contracts import ML_PIPELINE_PROJECT
from shared.logs import RETENTION_DAYS
from shared.tagging import StackTags


@dataclass(frozen=True)
class PipelineConfig:
    stack: str
    tags: StackTags
    log_retention_days: int
    deletion_protection: bool
    alarm_emails: tuple[str, ...]
    gpu_training_stack: Optional[str]
    lake: lake_settings.LakeSettings
    ingest: ingestion_settings.IngestSettings
    serving: serving_settings.ServingSettings


def load() -> PipelineConfig:
    reader = ConfigReader(pulumi.Config())
    stack = pulumi.get_stack()
    gpu_stack = reader.optional_string("gpuTrainingStack")
    if gpu_stack is not None and len(gpu_stack.split("/")) != 3:
        raise ConfigError(f"config {reader.key('gpuTrainingStack')}: must be <org>/gpu-training/<stack>; got {gpu_stack!r}")
    tags = reader.stack_tags(ML_PIPELINE_PROJECT, stack)
    return PipelineConfig(
        stack=stack,
        tags=tags,
        log_retention_days=reader.integer("logRetentionDays", 30, allowed=RETENTION_DAYS),
        deletion_protection=reader.boolean("deletionProtection", False),
        alarm_emails=tuple(reader.string_list("alarmEmails", [], item_check=lambda e: None if "@" in e
                                              else f"{e!r} is not an e-mail address")),
        gpu_training_stack=gpu_stack,
        lake=lake_settings.load(reader),
        ingest=ingestion_settings.load(reader),
        serving=serving_settings.load(reader, production=tags.environment == "prod"),
    )
