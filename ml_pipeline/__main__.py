"""ml-pipeline: wiring only. Config in config.py, resources in the components, outputs exported below."""
import pulumi

from ml_pipeline import config as stack_config
from ml_pipeline import metric_names
from ml_pipeline.ingestion.component import ImageIngestion, ImageIngestionArgs, layer_zip
from ml_pipeline.lake.data_lake import DataLake, DataLakeArgs
from ml_pipeline.observability.component import (ApiTargets, DriftSources, EndpointTargets, IngestTargets,
                                                  Observability, ObservabilityArgs, TrainingTargets)
from ml_pipeline.serving.deployment import CAPTURE_PREFIX, ModelDeployment, ModelDeploymentArgs, state_machine_name
from ml_pipeline.serving.inference_api import InferenceApi, InferenceApiArgs
from ml_pipeline.training.component import TrainingWorkflow, TrainingWorkflowArgs
from shared import iam
from shared.alarm_topic import AlarmTopic, AlarmTopicArgs
from shared.budget import StackBudget, StackBudgetArgs
from shared.context import AwsContext
from shared.contracts import ML_PIPELINE_PROJECT, GpuTrainingStack
from shared.kms import EncryptionKey, EncryptionKeyArgs
from shared.lambda_function import python_layer
from shared.naming import physical_name
from shared.table import Index, Table, TableArgs
from shared.tagging import register_stack_tags

cfg = stack_config.load()
register_stack_tags(cfg.tags)
ctx = AwsContext.lookup()
prefix = physical_name(ML_PIPELINE_PROJECT, cfg.stack)
training = GpuTrainingStack(cfg.gpu_training_stack) if cfg.gpu_training_stack else None
# The role ARN crosses a stack boundary into a bucket policy and a key policy: only a role of this account.
gpu_readers = (iam.account_role_arn(training.instance_role_arn, ctx, source=(
    f"config ml-pipeline:gpuTrainingStack ({cfg.gpu_training_stack}) output instance_role_arn")),) if training else ()
processed_bucket_name = ctx.bucket_name(cfg.lake.processed_bucket_name)

data_key = EncryptionKey("data-key", EncryptionKeyArgs(
    ctx=ctx, description=f"{prefix}: data lake objects and ingestion queues", alias=f"{prefix}-data",
    services=("events",), external_decrypt_role_arns=gpu_readers,
    external_decrypt_context={"aws:s3:arn": pulumi.Output.concat("arn:", ctx.partition, ":s3:::", processed_bucket_name)}
    if gpu_readers else {}))
# Log groups of this stack: functions (/aws/lambda/<prefix>-*), components (/mlplatform/<prefix>/*) and
# vended logs such as Step Functions' (/aws/vendedlogs/states/<prefix>-*).
metadata_key = EncryptionKey("metadata-key", EncryptionKeyArgs(
    ctx=ctx, description=f"{prefix}: catalog table, logs and alarm topic", alias=f"{prefix}-metadata",
    services=("logs", "cloudwatch"),
    log_group_prefixes=(f"/aws/lambda/{prefix}-", f"/mlplatform/{prefix}/", f"/aws/vendedlogs/states/{prefix}-")))

lake = DataLake("lake", DataLakeArgs(
    ctx=ctx, kms_key_arn=data_key.arn,
    raw_bucket_name=ctx.bucket_name(cfg.lake.raw_bucket_name),
    processed_bucket_name=processed_bucket_name,
    artifacts_bucket_name=ctx.bucket_name(cfg.lake.artifacts_bucket_name),
    logs_bucket_name=ctx.bucket_name(cfg.lake.logs_bucket_name),
    raw_prefix=cfg.ingest.raw_prefix, quarantine_prefix=cfg.ingest.quarantine_prefix,
    shard_prefix=cfg.ingest.shard_prefix, raw_infrequent_access_days=cfg.lake.raw_infrequent_access_days,
    raw_glacier_days=cfg.lake.raw_glacier_days, raw_retention_days=cfg.lake.raw_retention_days,
    access_log_retention_days=cfg.lake.access_log_retention_days, noncurrent_version_days=cfg.lake.noncurrent_version_days,
    capture_prefix=CAPTURE_PREFIX, capture_retention_days=cfg.lake.capture_retention_days,
    processed_reader_role_arns=gpu_readers,
))

# One item per image. "All images of a day" is a query on the table's own key; the rejected index
# is sparse (only rejected items carry rejected_pk), so accepted images cost no index writes.
catalog = Table("catalog", TableArgs(
    table_name=f"{prefix}-image-catalog", kms_key_arn=metadata_key.arn,
    hash_key="partition_date", range_key="image_id",
    attributes={"partition_date": "S", "image_id": "S", "rejected_pk": "S", "rejected_at": "S"},
    indexes=(Index(name="rejected-index", hash_key="rejected_pk", range_key="rejected_at"),),
    deletion_protection=cfg.deletion_protection,
))

alarm_topic = AlarmTopic("alarms", AlarmTopicArgs(ctx=ctx, topic_name=f"{prefix}-alarms", kms_key_arn=metadata_key.arn,
                                                  email_endpoints=cfg.alarm_emails))

image_layer = python_layer("image-layer", layer_name=f"{prefix}-image-libs", zip_path=layer_zip(cfg.ingest.architecture),
                           architecture=cfg.ingest.architecture, description="Pillow for python3.12 (make layer)")

ingestion = ImageIngestion("ingest", ImageIngestionArgs(
    ctx=ctx, name_prefix=prefix, settings=cfg.ingest,
    raw_bucket_name=lake.raw.name, raw_bucket_arn=lake.raw.arn,
    processed_bucket_name=lake.processed.name, processed_bucket_arn=lake.processed.arn,
    catalog_table_name=catalog.name, catalog_table_arn=catalog.arn,
    data_key_arn=data_key.arn, metadata_key_arn=metadata_key.arn, layer_arn=image_layer.arn,
    alarm_topic_arn=alarm_topic.arn, log_retention_days=cfg.log_retention_days,
))

if cfg.budget.monthly_usd > 0:
    StackBudget("budget", StackBudgetArgs(budget_name=f"{prefix}-monthly", monthly_usd=cfg.budget.monthly_usd, tags=cfg.tags,
                                          emails=cfg.alarm_emails, actual_alert_percent=cfg.budget.actual_alert_percent))

# Issue 9: the training workflow. gpu-training's experiments table when referenced (contract 9); its
# subnets only when trainingNetwork is gpu-training (their S3 endpoint must then admit this stack's buckets).
use_gpu_network = training is not None and cfg.training.network == "gpu-training"
training_workflow = TrainingWorkflow("training", TrainingWorkflowArgs(
    ctx=ctx, name_prefix=prefix, settings=cfg.training, image_size=cfg.ingest.training_image_size,
    shard_prefix=cfg.ingest.shard_prefix, processed_bucket_name=lake.processed.name,
    processed_bucket_arn=lake.processed.arn, artifacts_bucket_name=lake.artifacts.name,
    artifacts_bucket_arn=lake.artifacts.arn, catalog_table_name=catalog.name, catalog_table_arn=catalog.arn,
    data_key_arn=data_key.arn, metadata_key_arn=metadata_key.arn, alarm_topic_arn=alarm_topic.arn,
    log_retention_days=cfg.log_retention_days, deletion_protection=cfg.deletion_protection,
    experiments_table_name=training.experiments_table_name if training else None,
    experiments_key_arn=training.kms_key_arn if training else None,
    subnet_ids=training.private_subnet_ids if use_gpu_network else None,
    security_group_id=training.security_group_id if use_gpu_network else None,
    # Approved versions go to the deployment workflow below (named here: it reads this workflow's table).
    deployment_state_machine_arn=ctx.arn("states", f"stateMachine:{state_machine_name(prefix)}"),
))

# Serving (issue 10): Pulumi owns the names, roles, tables, API and stream; the deployment workflow owns
# the endpoint, its configs and its scalable targets.
deployment = ModelDeployment("serving", ModelDeploymentArgs(
    ctx=ctx, name_prefix=prefix, settings=cfg.serving, image_uri=training_workflow.inference_image_uri,
    versions_table_name=training_workflow.versions_table.name, versions_table_arn=training_workflow.versions_table.arn,
    artifacts_bucket_arn=lake.artifacts.arn, capture_bucket_name=lake.artifacts.name, capture_bucket_arn=lake.artifacts.arn,
    data_key_arn=data_key.arn, metadata_key_arn=metadata_key.arn, alarm_topic_arn=alarm_topic.arn,
    log_retention_days=cfg.log_retention_days, deletion_protection=cfg.deletion_protection,
))
inference = InferenceApi("inference", InferenceApiArgs(
    ctx=ctx, name_prefix=prefix, stage_name=cfg.stack, settings=cfg.serving, endpoint_name=deployment.endpoint_name,
    endpoint_arn=deployment.endpoint_arn, versions_table_name=training_workflow.versions_table.name,
    versions_table_arn=training_workflow.versions_table.arn, ab_table_name=deployment.ab_table.name, ab_table_arn=deployment.ab_table.arn,
    state_machine_arn=deployment.state_machine.arn, data_key_arn=data_key.arn, metadata_key_arn=metadata_key.arn,
    alarm_topic_arn=alarm_topic.arn, log_retention_days=cfg.log_retention_days,
    deletion_protection=cfg.deletion_protection,
))

# Dashboards and alarms of what this stack holds; the serving, training and drift sections take the
# endpoint, API, stream and workflow names as args (ml_pipeline/observability/component.py).
observability = Observability("observability", ObservabilityArgs(
    ctx=ctx, name_prefix=prefix, settings=cfg.observability, metric_namespace=metric_names.namespace(prefix),
    alarm_topic_arn=alarm_topic.arn, data_key_arn=data_key.arn, log_kms_key_arn=metadata_key.arn,
    log_retention_days=cfg.log_retention_days,
    ingest=IngestTargets(queue_name=ingestion.queue.name, dead_letter_queue_name=ingestion.dead_letter_queue.name,
                         function_name=ingestion.function.name, log_group_name=ingestion.function.log_group.name),
    training=TrainingTargets(state_machine_arn=training_workflow.state_machine.arn, model_name=cfg.training.model_name,
                             functions={f"training-{role}": fn.name for role, fn in training_workflow.functions.items()}),
    endpoint=EndpointTargets(endpoint_name=deployment.endpoint_name, extra_alarm_names=deployment.rollback_alarm_names),
    api=ApiTargets(api_name=inference.rest_api.name, stage=inference.stage.stage_name, stream_name=inference.stream.name,
                   consumer_function_name=inference.consumer.name, failure_queue_name=inference.failure_queue.name,
                   functions={"predict": inference.predict.name, "manage": inference.manage.name}),
    drift=DriftSources(
        capture_bucket_name=lake.artifacts.name, capture_bucket_arn=lake.artifacts.arn, capture_prefix=deployment.capture_prefix,
        snapshot_bucket_name=lake.artifacts.name, snapshot_bucket_arn=lake.artifacts.arn,
        snapshot_prefix=training_workflow.snapshot_prefix, shard_bucket_arn=lake.processed.arn,
        shard_prefix=cfg.ingest.shard_prefix, model_versions_table_name=training_workflow.versions_table.name,
        model_versions_table_arn=training_workflow.versions_table.arn, model_versions_key_arn=metadata_key.arn,
        layer_arn=image_layer.arn, architecture=cfg.ingest.architecture, target_size=cfg.ingest.training_image_size),
))

pulumi.export("raw_bucket_name", lake.raw.name)
pulumi.export("raw_upload_prefix", cfg.ingest.raw_prefix)
pulumi.export("processed_bucket_name", lake.processed.name)
pulumi.export("artifacts_bucket_name", lake.artifacts.name)
pulumi.export("logs_bucket_name", lake.logs.name)
pulumi.export("catalog_table_name", catalog.name)
pulumi.export("data_kms_key_arn", data_key.arn)
pulumi.export("metadata_kms_key_arn", metadata_key.arn)
pulumi.export("ingest_queue_url", ingestion.queue.url)
pulumi.export("ingest_dead_letter_queue_url", ingestion.dead_letter_queue.url)
pulumi.export("ingest_function_name", ingestion.function.name)
pulumi.export("alarm_topic_arn", alarm_topic.arn)
pulumi.export("training_state_machine_arn", training_workflow.state_machine.arn)
pulumi.export("model_versions_table_name", training_workflow.versions_table.name)
pulumi.export("experiments_table_name", training_workflow.experiments_table_name)
pulumi.export("model_package_group_name", training_workflow.model_package_group_name)
pulumi.export("sagemaker_execution_role_arn", training_workflow.execution_role_arn)
pulumi.export("endpoint_name", deployment.endpoint_name)
pulumi.export("deployment_state_machine_arn", deployment.state_machine.arn)
pulumi.export("ab_tests_table_name", deployment.ab_table.name)
pulumi.export("inference_api_url", inference.url)
pulumi.export("inference_api_key_id", inference.api_key.id)
pulumi.export("predict_stream_name", inference.stream.name)
pulumi.export("predictions_table_name", inference.results_table.name)
pulumi.export("serving_operator_role_arn", inference.operator_role.arn)
