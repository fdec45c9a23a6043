"""The ml-pipeline stack's config: each area's settings, composed into one typed, validated object."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from ml_pipeline.ingestion import settings as ingestion_settings
from ml_pipeline.lake import settings as lake_settings
from ml_pipeline.observability import settings as observability_settings
from ml_pipeline.serving import settings as serving_settings
from ml_pipeline.training import settings as training_settings
from shared import budget as budget_settings
from shared.config_reader import ConfigError, ConfigReader, check_region
from shared.contracts import GPU_TRAINING_PROJECT, ML_PIPELINE_PROJECT, parse_stack_name
from shared.logs import RETENTION_DAYS
from shared.naming import physical_name
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
    budget: budget_settings.BudgetSettings
    observability: observability_settings.ObservabilitySettings
    training: training_settings.TrainingSettings
    serving: serving_settings.ServingSettings


def load() -> PipelineConfig:
    check_region()
    reader = ConfigReader(pulumi.Config())
    stack = pulumi.get_stack()
    gpu_stack = reader.optional_string("gpuTrainingStack", expected="<org>/gpu-training/<stack>")
    if gpu_stack is not None:
        try:
            parse_stack_name(gpu_stack, GPU_TRAINING_PROJECT)
        except ValueError as exc:
            raise ConfigError(f"config {reader.key('gpuTrainingStack')}: {exc} "
                              f"(set it with `pulumi config set gpuTrainingStack <org>/gpu-training/<stack>`)") from None
    training = training_settings.load(reader)
    reader.require(training.network != "gpu-training" or gpu_stack is not None, ["trainingNetwork", "gpuTrainingStack"],
                   "trainingNetwork gpu-training needs gpuTrainingStack set (its subnets come from that stack)")
    tags = reader.stack_tags(ML_PIPELINE_PROJECT, stack)
    alarm_emails = tuple(reader.string_list("alarmEmails", [], item_check=lambda e: None if "@" in e
                                            else f"{e!r} is not an e-mail address"))
    return PipelineConfig(
        stack=stack,
        tags=tags,
        log_retention_days=reader.integer("logRetentionDays", 30, allowed=RETENTION_DAYS),
        deletion_protection=reader.boolean("deletionProtection", False),
        alarm_emails=alarm_emails,
        gpu_training_stack=gpu_stack,
        lake=lake_settings.load(reader, physical_name(ML_PIPELINE_PROJECT, stack)),
        ingest=ingestion_settings.load(reader),
        budget=budget_settings.load_settings(reader, alarm_emails),
        observability=observability_settings.load(reader),
        training=training,
        serving=serving_settings.load(reader, production=tags.environment == "prod", model_name=training.model_name),
    )
