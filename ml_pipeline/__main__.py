"""ml-pipeline: wiring only. Config in config.py, resources in the components, outputs exported below."""
import pulumi
import pulumi_aws as aws

from ml_pipeline import config as stack_config
from ml_pipeline.ingestion.component import ImageIngestion, ImageIngestionArgs, layer_zip
from ml_pipeline.lake.data_lake import DataLake, DataLakeArgs
from ml_pipeline.serving.deployment import ModelDeployment, ModelDeploymentArgs
from ml_pipeline.serving.inference_api import InferenceApi, InferenceApiArgs
from shared.alarm_topic import AlarmTopic, AlarmTopicArgs
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
unique = pulumi.Output.concat(ctx.account_id, "-", ctx.region)
training = GpuTrainingStack(cfg.gpu_training_stack) if cfg.gpu_training_stack else None
gpu_readers = (training.instance_role_arn,) if training else ()

data_key = EncryptionKey("data-key", EncryptionKeyArgs(
    ctx=ctx, description=f"{prefix}: data lake objects and ingestion queues", alias=f"{prefix}-data",
    services=("events",), external_decrypt_role_arns=gpu_readers))
metadata_key = EncryptionKey("metadata-key", EncryptionKeyArgs(
    ctx=ctx, description=f"{prefix}: catalog table, logs and alarm topic", alias=f"{prefix}-metadata",
    services=("logs", "cloudwatch")))

lake = DataLake("lake", DataLakeArgs(
    ctx=ctx, kms_key_arn=data_key.arn,
    raw_bucket_name=cfg.lake.raw_bucket_name or pulumi.Output.concat(prefix, "-raw-", unique),
    processed_bucket_name=cfg.lake.processed_bucket_name or pulumi.Output.concat(prefix, "-processed-", unique),
    artifacts_bucket_name=cfg.lake.artifacts_bucket_name or pulumi.Output.concat(prefix, "-artifacts-", unique),
    logs_bucket_name=cfg.lake.logs_bucket_name or pulumi.Output.concat(prefix, "-logs-", unique),
    raw_prefix=cfg.ingest.raw_prefix, quarantine_prefix=cfg.ingest.quarantine_prefix,
    shard_prefix=cfg.ingest.shard_prefix, raw_infrequent_access_days=cfg.lake.raw_infrequent_access_days,
    raw_glacier_days=cfg.lake.raw_glacier_days, raw_retention_days=cfg.lake.raw_retention_days,
    access_log_retention_days=cfg.lake.access_log_retention_days, noncurrent_version_days=cfg.lake.noncurrent_version_days,
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

# -- serving (issue 10) --------------------------------------------------------------------------
# TEMP(lead): replaced by training's table on merge (contract 4 schema).
model_versions = Table("model-versions", TableArgs(
    table_name=f"{prefix}-model-versions", kms_key_arn=metadata_key.arn, hash_key="model_name", range_key="version",
    attributes={"model_name": "S", "version": "N", "status": "S"},
    indexes=(Index(name="status-index", hash_key="model_name", range_key="status"),),
    deletion_protection=cfg.deletion_protection,
))
inference_image = aws.sagemaker.get_prebuilt_ecr_image_output(repository_name="pytorch-inference",
                                                              image_tag=cfg.serving.inference_image_tag)
deployment = ModelDeployment("serving", ModelDeploymentArgs(
    ctx=ctx, name_prefix=prefix, settings=cfg.serving, image_uri=inference_image.registry_path,
    versions_table_name=model_versions.name, versions_table_arn=model_versions.arn,
    artifacts_bucket_arn=lake.artifacts.arn, logs_bucket_name=lake.logs.name, logs_bucket_arn=lake.logs.arn,
    data_key_arn=data_key.arn, metadata_key_arn=metadata_key.arn, alarm_topic_arn=alarm_topic.arn,
    log_retention_days=cfg.log_retention_days, deletion_protection=cfg.deletion_protection,
))
inference = InferenceApi("inference", InferenceApiArgs(
    ctx=ctx, name_prefix=prefix, stage_name=cfg.stack, settings=cfg.serving, endpoint_name=deployment.endpoint_name,
    endpoint_arn=deployment.endpoint_arn, versions_table_name=model_versions.name,
    versions_table_arn=model_versions.arn, ab_table_name=deployment.ab_table.name, ab_table_arn=deployment.ab_table.arn,
    state_machine_arn=deployment.state_machine.arn, data_key_arn=data_key.arn, metadata_key_arn=metadata_key.arn,
    alarm_topic_arn=alarm_topic.arn, log_retention_days=cfg.log_retention_days,
    deletion_protection=cfg.deletion_protection,
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
pulumi.export("endpoint_name", deployment.endpoint_name)
pulumi.export("deployment_state_machine_arn", deployment.state_machine.arn)
pulumi.export("ab_tests_table_name", deployment.ab_table.name)
pulumi.export("inference_api_url", inference.url)
pulumi.export("inference_api_key_id", inference.api_key.id)
pulumi.export("predict_stream_name", inference.stream.name)
pulumi.export("predictions_table_name", inference.results_table.name)
pulumi.export("serving_operator_role_arn", inference.operator_role.arn)
