"""Issues 8 and 9 at the handler: records parsed and failed one by one, fixed-length catalog keys, final
permanent errors, missing vs denied sources, labels from the upload key and the daily statistics item,
and the standard library's logging (the runtime formats it as JSON)."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from ingest_builders import (
    NAMESPACE,
    PROCESSED_BUCKET,
    RAW_BUCKET,
    FakeContext,
    catalog_items,
    encode,
    event_body,
    picture,
    put_raw,
    shard_keys,
    sqs_event,
    sqs_record,
    statistics,
)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _inject(client: Any, event: str, status: int, body: bytes, match: str = "") -> list[str]:
    """Answer every matching request with an error before moto sees it; returns the requests seen."""
    calls: list[str] = []

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        if match not in (request.body.decode() if isinstance(request.body, bytes) else str(request.url)):
            return None
        calls.append(request.url)
        return AWSResponse(request.url, status, {}, _Raw(body))

    client.meta.events.register_first(event, hook)
    return calls


def _metrics(aws: Any) -> set[str]:
    import boto3

    found = boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"]
    return {m["MetricName"] for m in found}


def _by_key(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["source_key"]: item for item in items.values()}


def test_wrongly_typed_fields_fail_only_their_own_records(aws, ingest):
    # GIVEN one good record and one record per malformed field the issue names, and more
    good = put_raw(aws.s3, "incoming/cat/good.jpg", encode(picture()))
    base = json.loads(good["body"])

    def variant(change: Any) -> str:
        body = json.loads(json.dumps(base))
        change(body)
        return json.dumps(body)

    bad = {
        "numeric-time": variant(lambda b: b.update(time=1764385200)),
        "numeric-key": variant(lambda b: b["detail"]["object"].update(key=123)),
        "null-key": variant(lambda b: b["detail"]["object"].update(key=None)),
        "object-etag": variant(lambda b: b["detail"]["object"].update(etag={"x": 1})),
        "string-size": variant(lambda b: b["detail"]["object"].update(size="12")),
        "bool-size": variant(lambda b: b["detail"]["object"].update(size=True)),
        "list-detail": variant(lambda b: b.update(detail=[])),
        "naive-time": variant(lambda b: b.update(time="2026-11-29T03:00:00")),
        "array-body": "[1, 2]",
    }
    records = [sqs_record(body, message_id=name) for name, body in bad.items()]
    records.append({"messageId": "no-body"})

    # WHEN they arrive in one batch
    result = ingest.handler(sqs_event(good, *records), FakeContext())

    # THEN exactly the malformed records fail, and the good one is processed
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted([*bad, "no-body"])
    assert [i["status"] for i in catalog_items(aws.ddb).values()] == ["PROCESSED"]


def test_a_key_near_s3s_limit_gets_a_fixed_length_catalog_key_and_a_quarantine_key_within_limits(aws, ingest):
    # GIVEN an invalid upload whose key is 1,020 bytes (multi-byte characters included)
    key = "incoming/cat/" + "é" * 300 + "x" * (1020 - 13 - 600)
    assert len(key.encode()) == 1020
    record = put_raw(aws.s3, key, b"not an image")

    # WHEN it is ingested
    result = ingest.handler(sqs_event(record), FakeContext())

    # THEN the catalog key is a 64-character digest (DynamoDB's sort key limit is 1,024 bytes), the full
    # key is kept, and the quarantine copy's key fits S3's 1,024 bytes and names the catalog id
    assert result == {"batchItemFailures": []}
    [item] = catalog_items(aws.ddb).values()
    assert len(item["image_id"]) == 64 and item["source_key"] == key
    quarantined = item["quarantine_key"]
    assert len(quarantined.encode()) <= 1024 and quarantined.startswith("quarantine/incoming/cat/é")
    assert quarantined.endswith("~" + item["image_id"][:16])
    head = aws.s3.head_object(Bucket=RAW_BUCKET, Key=quarantined)
    assert head["Metadata"]["image-id"] == item["image_id"]


def test_a_permanent_catalog_error_is_final_on_the_first_try(aws, ingest):
    # GIVEN DynamoDB refuses the image's item for good (as it would a sort key over 1,024 bytes)
    record = put_raw(aws.s3, "incoming/cat/a.jpg", encode(picture()))
    record["messageId"] = "m-1"
    body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"key too long"}'
    calls = _inject(ingest._client("dynamodb"), "before-send.dynamodb.PutItem", 400, body)

    # WHEN it is ingested
    result = ingest.handler(sqs_event(record), FakeContext())

    # THEN the record is not failed (SQS would retry it into another orphan shard member), it was tried
    # once, and the alarmed permanent-error metric counts it
    assert result == {"batchItemFailures": []}
    assert len(calls) == 1
    assert "IngestPermanentErrors" in _metrics(aws)


def test_a_deleted_source_is_rejected_and_warned_but_access_denied_fails_and_alarms(aws, ingest, caplog):
    # GIVEN an event for an object that is gone (S3 answers 404: the role may list the upload prefix)
    gone = sqs_record(event_body("incoming/cat/gone.jpg", 1234, "etag", None), message_id="gone-1")
    # AND an object S3 refuses to read (403: a wrong policy or key, not a missing object)
    denied = put_raw(aws.s3, "incoming/cat/denied.jpg", encode(picture()))
    denied["messageId"] = "denied-1"
    body = b"<Error><Code>AccessDenied</Code><Message>denied</Message></Error>"
    _inject(ingest._client("s3"), "before-send.s3.GetObject", 403, body, match="denied.jpg")

    # WHEN both arrive in one batch
    with caplog.at_level(logging.INFO):
        result = ingest.handler(sqs_event(gone, denied), FakeContext())

    # THEN only the denied record fails (retried, then the DLQ); the gone one is recorded as rejected
    assert result == {"batchItemFailures": [{"itemIdentifier": "denied-1"}]}
    [item] = catalog_items(aws.ddb).values()
    assert (item["source_key"], item["status"], item["reason"]) == ("incoming/cat/gone.jpg", "REJECTED", "source_missing")
    # AND each is counted in its own metric (the denied one is alarmed), the gone one with a warning
    assert _metrics(aws) == {"IngestSourceMissing", "IngestAccessDenied"}
    [warning] = [r for r in caplog.records if r.getMessage() == "source missing"]
    assert warning.levelno == logging.WARNING and warning.key == "incoming/cat/gone.jpg"
    # AND logging is the standard library's: records reach the root logger's handlers (where the Lambda
    # runtime's JSON formatter adds the request id and turns the fields into keys); no handler of its own
    assert warning.name == "image_ingest" and logging.getLogger("image_ingest").handlers == []
    [done] = [r for r in caplog.records if r.getMessage() == "batch done"]
    assert (done.records, done.rejected, done.failed) == (2, 1, 1)


def test_labels_reach_the_catalog_the_shard_json_and_the_daily_statistics(aws, ingest):
    # GIVEN labelled, unlabelled and invalid uploads in one batch
    uploads = {
        "incoming/cat/1.jpg": encode(picture()),
        "incoming/Cat/2.png": encode(picture(), "PNG"),
        "incoming/dog/sub/3.jpg": encode(picture()),
        "incoming/4.jpg": encode(picture()),  # directly under the prefix: unlabelled
        "incoming/not a label!/5.jpg": encode(picture()),  # not a valid label: unlabelled
        "incoming/dog/6.jpg": b"not an image",  # rejected
    }
    records = [put_raw(aws.s3, key, data) for key, data in uploads.items()]
    ddb = ingest._client("dynamodb")
    updates: list[dict[str, Any]] = []
    ddb.meta.events.register("provide-client-params.dynamodb.UpdateItem", lambda params, **_: updates.append(params))

    # WHEN the batch is ingested, and then delivered again
    assert ingest.handler(sqs_event(*records), FakeContext()) == {"batchItemFailures": []}
    again = [sqs_record(r["body"]) for r in records]
    assert ingest.handler(sqs_event(*again), FakeContext()) == {"batchItemFailures": []}

    # THEN catalog items carry the label (absent when unlabelled)
    items = _by_key(catalog_items(aws.ddb))
    labels = {key: item.get("label") for key, item in items.items()}
    assert labels == {
        "incoming/cat/1.jpg": "cat",
        "incoming/Cat/2.png": "cat",
        "incoming/dog/sub/3.jpg": "dog",
        "incoming/4.jpg": None,
        "incoming/not a label!/5.jpg": None,
        "incoming/dog/6.jpg": "dog",
    }
    # AND the decodes went through the container's decode budget
    assert 0 < ingest.BUDGET.peak <= ingest.BUDGET.capacity
    # AND each shard JSON holds "label", null when unlabelled
    [shard] = shard_keys(aws.s3)
    data = aws.s3.get_object(Bucket=PROCESSED_BUCKET, Key=shard)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        lineage = [json.load(tar.extractfile(n)) for n in tar.getnames() if n.endswith(".json")]
    assert {j["source_key"]: j["label"] for j in lineage} == {k: v for k, v in labels.items() if k != "incoming/dog/6.jpg"}
    # AND the day's statistics were added once, by one UpdateItem, and the redelivery added nothing
    assert len(updates) == 1 and updates[0]["UpdateExpression"].startswith("ADD ")
    stats = statistics(aws.ddb)
    assert stats == {
        "partition_date": "stats#2026-11-29",
        "image_id": "#totals",
        "accepted": 5,
        "rejected": 1,
        "unlabelled": 2,
        "label:cat": 2,
        "label:dog": 1,
    }


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("incoming/cat/a.jpg", "cat"),
        ("incoming/CAT_2-x/a.jpg", "cat_2-x"),
        ("incoming/a.jpg", None),
        ("incoming/-cat/a.jpg", None),
        ("incoming/" + "a" * 63 + "/x.jpg", "a" * 63),
        ("incoming/" + "a" * 64 + "/x.jpg", None),
        ("incoming//a.jpg", None),
        ("elsewhere/cat/a.jpg", None),
    ],
)
def test_label_rule(load, key, label):
    assert load().catalog.label_of(key, "incoming/", 0) == label


@pytest.mark.parametrize(
    ("key", "label"),
    [("incoming/cam-7/bird/1.jpg", "bird"), ("incoming/cam-7/1.jpg", None), ("incoming/cam-7/bird/x/1.jpg", "bird")],
)
def test_the_label_segment_is_configurable(load, key, label):
    # labelPathSegment 1: incoming/<camera>/<label>/<file>
    handler = load(LABEL_PATH_SEGMENT="1")
    assert handler.SETTINGS.label_path_segment == 1
    assert handler.catalog.label_of(key, handler.SETTINGS.raw_prefix, handler.SETTINGS.label_path_segment) == label
