"""The observability component with every section, under the offline mocks, named by the conventions
the serving and training areas build to (their resources are not in this branch): endpoint
``<prefix>-endpoint`` with variants champion/challenger, REST API ``<prefix>-inference`` stage ``<stack>``,
state machine ``<prefix>-training``, table ``<prefix>-model-versions`` (contract 4)."""
from __future__ import annotations

from offline import runner
from shared.context import AwsContext

STACK = "test"
PREFIX = f"ml-pipeline-{STACK}"
NAMESPACE = f"MLPlatform/{PREFIX}"
ACCOUNT, REGION = "123456789012", "us-east-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{PREFIX}-alarms"
DATA_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/data"
METADATA_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/metadata"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{PREFIX}-training"
TABLE = f"{PREFIX}-model-versions"
BUCKETS = {role: f"{PREFIX}-{role}-{ACCOUNT}-{REGION}" for role in ("logs", "artifacts", "processed")}


def build(retrain_on_drift: bool = True):
    from ml_pipeline.observability.component import (ApiTargets, DriftSources, EndpointTargets, IngestTargets,
                                                      Observability, ObservabilityArgs, TrainingTargets)
    from ml_pipeline.observability.settings import ObservabilitySettings

    settings = ObservabilitySettings(
        anomaly_band_width=2.0, error_rate_percent=5.0, drift_period_minutes=60, drift_psi_threshold=0.25,
        drift_min_samples=100, drift_max_records=5000, drift_baseline_images=2000, drift_memory_mb=1024,
        retrain_on_drift=retrain_on_drift)
    arn = lambda bucket: f"arn:aws:s3:::{bucket}"  # noqa: E731
    Observability("observability", ObservabilityArgs(
        ctx=AwsContext.lookup(), name_prefix=PREFIX, settings=settings, metric_namespace=NAMESPACE,
        alarm_topic_arn=TOPIC_ARN, data_key_arn=DATA_KEY, log_kms_key_arn=METADATA_KEY, log_retention_days=30,
        ingest=IngestTargets(queue_name=f"{PREFIX}-ingest", dead_letter_queue_name=f"{PREFIX}-ingest-dlq",
                             function_name=f"{PREFIX}-image-ingest", log_group_name=f"/aws/lambda/{PREFIX}-image-ingest"),
        endpoint=EndpointTargets(endpoint_name=f"{PREFIX}-endpoint", variants=("champion", "challenger"),
                                 extra_alarm_names=(f"{PREFIX}-champion-5xx-rollback",)),
        api=ApiTargets(api_name=f"{PREFIX}-inference", stage=STACK, stream_name=f"{PREFIX}-predictions",
                       consumer_function_name=f"{PREFIX}-serving-consumer",
                       functions={"predict": f"{PREFIX}-serving-predict"},
                       failure_queue_name=f"{PREFIX}-consumer-failures"),
        training=TrainingTargets(state_machine_arn=STATE_MACHINE_ARN, model_name="image-classifier",
                                 functions={"training-snapshot": f"{PREFIX}-training-snapshot"}),
        drift=DriftSources(
            capture_bucket_name=BUCKETS["logs"], capture_bucket_arn=arn(BUCKETS["logs"]), capture_prefix="data-capture/",
            snapshot_bucket_name=BUCKETS["artifacts"], snapshot_bucket_arn=arn(BUCKETS["artifacts"]),
            snapshot_prefix="snapshots/", shard_bucket_arn=arn(BUCKETS["processed"]), shard_prefix="shards/",
            model_versions_table_name=TABLE,
            model_versions_table_arn=f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
            layer_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{PREFIX}-image-libs:1", architecture="arm64",
            target_size=512),
    ))


def plan(retrain_on_drift: bool = True) -> runner.Plan:
    return runner.run_callable(lambda: build(retrain_on_drift), "ml-pipeline", STACK,
                               config={"aws:region": REGION})
