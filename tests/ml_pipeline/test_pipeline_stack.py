"""ml-pipeline data lake and ingestion under mocks: buckets, keys, rule, queues, mapping, permissions."""
import json

import pytest

from offline import runner
from shared.config_reader import ConfigError


def _statements(text):
    return json.loads(text)["Statement"]


def _inputs(plan, type_token, name):
    return plan.one(type_token, name).inputs


BUCKETS = ("lake-raw", "lake-processed", "lake-artifacts", "lake-logs")


@pytest.mark.parametrize("component", BUCKETS)
def test_every_bucket_is_private_versioned_and_tls_only(pipeline_plan, component):
    pab = _inputs(pipeline_plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{component}-public-access")
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert _inputs(pipeline_plan, "aws:s3/bucketVersioning:BucketVersioning",
                   f"{component}-versioning")["versioningConfiguration"]["status"] == "Enabled"
    deny = _statements(_inputs(pipeline_plan, "aws:s3/bucketPolicy:BucketPolicy", f"{component}-policy")["policy"])[0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = {r["id"]: r for r in _inputs(pipeline_plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                                         f"{component}-lifecycle")["rules"]}
    assert rules["bucket-hygiene"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert rules["bucket-hygiene"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30


@pytest.mark.parametrize("component", BUCKETS[:3])
def test_data_buckets_use_the_data_key_with_bucket_keys_and_log_access(pipeline_plan, component):
    sse = _inputs(pipeline_plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                  f"{component}-encryption")["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                         "kmsMasterKeyId": pipeline_plan.outputs["data_kms_key_arn"]}
    assert sse["bucketKeyEnabled"] is True
    logging = _inputs(pipeline_plan, "aws:s3/bucketLogging:BucketLogging", f"{component}-access-logs")
    assert logging["targetBucket"] == pipeline_plan.outputs["logs_bucket_name"]


def test_the_access_log_bucket_uses_sse_s3_and_admits_only_s3_log_delivery(pipeline_plan):
    sse = _inputs(pipeline_plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                  "lake-logs-encryption")["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    delivery = _statements(_inputs(pipeline_plan, "aws:s3/bucketPolicy:BucketPolicy", "lake-logs-policy")["policy"])[1]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"} and delivery["Action"] == "s3:PutObject"
    assert delivery["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_raw_images_tier_down_and_expire_after_the_configured_retention(pipeline_plan):
    rules = {r["id"]: r for r in _inputs(pipeline_plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                                         "lake-raw-lifecycle")["rules"]}
    raw = rules["raw-images"]
    assert raw["filter"] == {"prefix": "incoming/"}
    assert raw["transitions"] == [{"days": 30, "storageClass": "STANDARD_IA"}, {"days": 90, "storageClass": "GLACIER_IR"}]
    assert raw["expiration"] == {"days": 180}  # dev stack file
    assert rules["quarantine"]["filter"] == {"prefix": "quarantine/"} and rules["quarantine"]["expiration"] == {"days": 180}


def test_the_raw_bucket_sends_its_events_to_eventbridge(pipeline_plan):
    notification = _inputs(pipeline_plan, "aws:s3/bucketNotification:BucketNotification", "lake-raw-eventbridge")
    assert notification["eventbridge"] is True
    assert not pipeline_plan.of_type("aws:s3/bucketNotification:BucketNotification")[1:], "one notification per bucket"


def test_the_rule_matches_object_created_events_of_the_raw_bucket_under_the_prefix(pipeline_plan):
    pattern = json.loads(_inputs(pipeline_plan, "aws:cloudwatch/eventRule:EventRule", "ingest-rule")["eventPattern"])
    assert pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {
        "bucket": {"name": [pipeline_plan.outputs["raw_bucket_name"]]}, "object": {"key": [{"prefix": "incoming/"}]}}}
    target = _inputs(pipeline_plan, "aws:cloudwatch/eventTarget:EventTarget", "ingest-target")
    queue = pipeline_plan.one("aws:sqs/queue:Queue", "ingest-queue")
    dlq = pipeline_plan.one("aws:sqs/queue:Queue", "ingest-dlq")
    assert target["arn"] == queue.state["arn"] and target["deadLetterConfig"]["arn"] == dlq.state["arn"]


def test_the_queue_buffers_retries_and_dead_letters(pipeline_plan):
    queue = _inputs(pipeline_plan, "aws:sqs/queue:Queue", "ingest-queue")
    dlq = pipeline_plan.one("aws:sqs/queue:Queue", "ingest-dlq")
    assert json.loads(queue["redrivePolicy"]) == {"deadLetterTargetArn": dlq.state["arn"], "maxReceiveCount": 5}
    function = _inputs(pipeline_plan, "aws:lambda/function:Function", "ingest-fn")
    assert queue["visibilityTimeoutSeconds"] >= 6 * function["timeout"]
    for q in (queue, dlq.inputs):
        assert q["kmsMasterKeyId"] == pipeline_plan.outputs["data_kms_key_arn"]
    policy = _statements(_inputs(pipeline_plan, "aws:sqs/queuePolicy:QueuePolicy", "ingest-queue-policy")["policy"])[0]
    rule = pipeline_plan.one("aws:cloudwatch/eventRule:EventRule", "ingest-rule")
    assert policy["Principal"] == {"Service": "events.amazonaws.com"}
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": rule.state["arn"]}}


def test_the_mapping_batches_reports_partial_failures_and_caps_concurrency(pipeline_plan):
    mapping = _inputs(pipeline_plan, "aws:lambda/eventSourceMapping:EventSourceMapping", "ingest-mapping")
    queue = pipeline_plan.one("aws:sqs/queue:Queue", "ingest-queue")
    assert mapping["eventSourceArn"] == queue.state["arn"]
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["batchSize"] == 50 and mapping["maximumBatchingWindowInSeconds"] == 5
    assert mapping["scalingConfig"] == {"maximumConcurrency": 20}


def test_the_function_runs_python312_with_its_layer_tracing_and_own_log_group(pipeline_plan):
    function = _inputs(pipeline_plan, "aws:lambda/function:Function", "ingest-fn")
    layer = pipeline_plan.one("aws:lambda/layerVersion:LayerVersion", "image-layer")
    assert function["runtime"] == "python3.12" and function["architectures"] == ["arm64"]
    assert function["handler"] == "handler.handler" and function["layers"] == [layer.state["arn"]]
    assert layer.inputs["compatibleArchitectures"] == ["arm64"]
    assert function["tracingConfig"] == {"mode": "Active"}
    assert function["loggingConfig"]["logGroup"] == "/aws/lambda/ml-pipeline-dev-image-ingest"
    env = function["environment"]["variables"]
    assert env["PROCESSED_BUCKET"] == pipeline_plan.outputs["processed_bucket_name"]
    assert env["CATALOG_TABLE"] == pipeline_plan.outputs["catalog_table_name"]
    assert (env["TRAINING_IMAGE_SIZE"], env["JPEG_QUALITY"], env["QUARANTINE_PREFIX"]) == ("512", "90", "quarantine/")
    group = _inputs(pipeline_plan, "aws:cloudwatch/logGroup:LogGroup", "ingest-fn-logs")
    assert group["kmsKeyId"] == pipeline_plan.outputs["metadata_kms_key_arn"]


def test_the_function_role_reaches_only_its_prefixes_table_queue_and_keys(pipeline_plan):
    s = {st["Sid"]: st for st in _statements(_inputs(pipeline_plan, "aws:iam/rolePolicy:RolePolicy", "ingest-fn-policy")["policy"])}
    raw, processed = pipeline_plan.outputs["raw_bucket_name"], pipeline_plan.outputs["processed_bucket_name"]
    assert s["ReadRawImages"]["Resource"] == [f"arn:aws:s3:::{raw}/incoming/*"]
    assert s["QuarantineCopies"]["Resource"] == [f"arn:aws:s3:::{raw}/quarantine/*"]
    assert s["WriteShards"]["Resource"] == [f"arn:aws:s3:::{processed}/shards/*"]
    assert s["Catalog"]["Action"] == ["dynamodb:BatchGetItem", "dynamodb:PutItem"]
    assert s["IngestQueue"]["Resource"] == [pipeline_plan.one("aws:sqs/queue:Queue", "ingest-queue").state["arn"]]
    assert s["DataKey"]["Resource"] == [pipeline_plan.outputs["data_kms_key_arn"]]
    assert "s3:DeleteObject" not in json.dumps(s)


def test_catalog_table_keys_and_sparse_rejected_index(pipeline_plan):
    table = _inputs(pipeline_plan, "aws:dynamodb/table:Table", "catalog")
    assert (table["hashKey"], table["rangeKey"]) == ("partition_date", "image_id")
    assert table["billingMode"] == "PAY_PER_REQUEST" and table["pointInTimeRecovery"]["enabled"] is True
    assert table["serverSideEncryption"]["kmsKeyArn"] == pipeline_plan.outputs["metadata_kms_key_arn"]
    index = table["globalSecondaryIndexes"][0]
    assert index["name"] == "rejected-index"
    assert [k["attributeName"] for k in index["keySchemas"]] == ["rejected_pk", "rejected_at"]


def test_keys_rotate_and_grant_exactly_the_services_that_use_them(pipeline_plan):
    data = pipeline_plan.one("aws:kms/key:Key", "data-key-key").inputs
    metadata = pipeline_plan.one("aws:kms/key:Key", "metadata-key-key").inputs
    assert data["enableKeyRotation"] and metadata["enableKeyRotation"]
    assert {s["Sid"] for s in _statements(data["policy"])} == {"EnableIamPolicies", "EventBridge", "ExternalReaders"}
    assert {s["Sid"] for s in _statements(metadata["policy"])} == {
        "EnableIamPolicies", "CloudWatchLogs", "CloudWatchLogsDescribe", "CloudWatchAlarms"}


def test_the_dead_letter_queue_and_backlog_are_alarmed(pipeline_plan):
    alarms = {a.inputs["name"]: a.inputs for a in pipeline_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    dlq = alarms["ml-pipeline-dev-ingest-dlq-not-empty"]
    assert dlq["namespace"] == "AWS/SQS" and dlq["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["dimensions"] == {"QueueName": "ml-pipeline-dev-ingest-dlq"} and dlq["threshold"] == 0
    assert dlq["alarmActions"] == [pipeline_plan.outputs["alarm_topic_arn"]]
    assert "ml-pipeline-dev-ingest-backlog-age" in alarms


def test_without_a_gpu_training_stack_there_is_no_cross_stack_grant(pipeline_plan_as_filed):
    plan = pipeline_plan_as_filed
    assert not [r for r in plan.registrations.values() if r["type"] == "pulumi:pulumi:StackReference"]
    assert "ExternalReaders" not in plan.one("aws:kms/key:Key", "data-key-key").inputs["policy"]


def test_a_missing_layer_build_fails_with_the_command_that_builds_it(tmp_path):
    from shared.lambda_function import python_layer
    with pytest.raises(FileNotFoundError) as error:
        python_layer("l", layer_name="l", zip_path=tmp_path / "image_ingest-x86_64.zip", architecture="x86_64",
                     description="")
    assert "make layer ARCH=x86_64" in str(error.value)


def test_the_layer_the_plan_uploads_is_built_for_the_functions_architecture(pipeline_plan):
    import zipfile
    layer = pipeline_plan.one("aws:lambda/layerVersion:LayerVersion", "image-layer").inputs
    assert layer["code"].path.endswith("image_ingest-arm64.zip")
    names = zipfile.ZipFile(layer["code"].path).namelist()
    assert any(n.startswith("python/PIL/") for n in names)
    assert any("aarch64" in n for n in names if n.endswith(".so")), "Pillow's native code must be built for arm64"


@pytest.mark.parametrize("key, value, message", [
    ("ingestBatchSize", "0", "between 1 and 10000"),
    ("ingestBatchWindowSeconds", "0", "must be >= 1 when"),
    ("quarantinePrefix", "incoming/bad/", "must not overlap"),
    ("rawPrefix", "/incoming", "ending in /"),
    ("jpegQuality", "96", "between 50 and 95"),
    ("allowedImageFormats", '["GIF"]', "not one of"),
    ("ingestArchitecture", "arm", "arm64, x86_64"),
    ("rawGlacierDays", "10", "between 31 and 3650"),
    ("ingestReservedConcurrency", "5", "ingestMaxConcurrency"),
    ("costCenter", None, "is required"),
    ("dataClassification", "secret", "ml-pipeline:dataClassification: must be one of"),
])
def test_a_bad_config_value_fails_with_a_message_naming_the_key(projects, key, value, message):
    with pytest.raises(ConfigError) as error:
        runner.run(projects["ml-pipeline"], "dev", config_overrides={f"ml-pipeline:{key}": value})
    assert key in str(error.value) or "tags" in str(error.value)
    assert message in str(error.value)


def test_the_function_zip_holds_exactly_the_functions_modules(pipeline_plan):
    code = _inputs(pipeline_plan, "aws:lambda/function:Function", "ingest-fn")["code"]
    assert set(code.assets) == {"handler.py", "imaging.py", "catalog.py", "shards.py", "budget.py", "environment.py",
                                "metric_names.py"}


def test_eventbridge_may_use_the_queue_key_without_source_conditions(pipeline_plan):
    # KMS requests made for EventBridge deliveries carry no aws:SourceAccount/SourceArn; a condition
    # on this grant would make every delivery to the encrypted queue fail silently.
    statements = _statements(pipeline_plan.one("aws:kms/key:Key", "data-key-key").inputs["policy"])
    events = next(s for s in statements if s["Sid"] == "EventBridge")
    assert events["Principal"] == {"Service": "events.amazonaws.com"} and "Condition" not in events
    assert events["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
