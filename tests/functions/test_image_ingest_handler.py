"""The image-ingest handler against moto S3 and DynamoDB, driven by SQS-shaped EventBridge events."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from ingest_builders import (
    PARTITION,
    PROCESSED_BUCKET,
    RAW_BUCKET,
    TABLE,
    FakeContext,
    catalog_items,
    encode,
    event_body,
    jpeg_markers,
    picture,
    put_raw,
    shard_keys,
    shard_members,
    sqs_event,
    sqs_record,
)
from PIL import Image


def _image_id(key: str, record: dict[str, Any] | None = None, version: str | None = None) -> str:
    """The catalog's fixed-length id: SHA-256 of bucket/key#version (written out here, not imported)."""
    version = version or json.loads(record["body"])["detail"]["object"]["version-id"]
    return hashlib.sha256(f"{RAW_BUCKET}/{key}#{version}".encode()).hexdigest()


def _shard_bytes(aws: Any, item: dict[str, Any]) -> bytes:
    start, length = item["shard_offset"], item["shard_length"]
    byte_range = f"bytes={start}-{start + length - 1}"
    return aws.s3.get_object(Bucket=PROCESSED_BUCKET, Key=item["shard_key"], Range=byte_range)["Body"].read()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _fail_requests(
    client: Any, operation: str, status: int, code: str, times: int | None, url_part: str = ""
) -> list[str]:
    """Answer `times` matching requests (None: all) with an S3 error before moto sees them."""
    calls: list[str] = []

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        if url_part not in request.url:
            return None
        calls.append(request.url)
        if times is not None and len(calls) > times:
            return None
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, status, {}, _Raw(body))

    client.meta.events.register_first(f"before-send.s3.{operation}", hook)
    return calls


def test_good_jpeg_and_png_are_packed_into_one_shard_and_catalogued(aws, ingest):
    # GIVEN a JPEG larger than the target and a PNG smaller than it, one with a space and a plus in its key
    jpeg_key, png_key = "uploads/cam 1/a+b.jpg", "uploads/small.png"
    jpeg_rec = put_raw(aws.s3, jpeg_key, encode(picture((1024, 768)), quality=95))
    png_rec = put_raw(aws.s3, png_key, encode(picture((300, 200)), "PNG"))

    # WHEN one batch holds both
    result = ingest.handler(sqs_event(jpeg_rec, png_rec), FakeContext())

    # THEN nothing fails, one shard holds both, and each catalog item points at its JPEG in the shard
    assert result == {"batchItemFailures": []}
    [shard_key] = shard_keys(aws.s3)
    assert shard_key.startswith("shards/") and shard_key.endswith(".tar")
    assert len(shard_members(aws.s3, shard_key)) == 4
    items = catalog_items(aws.ddb)
    jpeg_item, png_item = items[_image_id(jpeg_key, jpeg_rec)], items[_image_id(png_key, png_rec)]
    for item, fmt, size, out in (
        (jpeg_item, "JPEG", (1024, 768), (512, 384)),
        (png_item, "PNG", (300, 200), (300, 200)),
    ):
        assert item["status"] == "PROCESSED"
        assert item["partition_date"] == PARTITION
        assert item["shard_key"] == shard_key
        assert (item["format"], item["width"], item["height"]) == (fmt, *size)
        assert (item["out_width"], item["out_height"]) == out
        assert len(item["sha256"]) == 64 and item["processed_at"].endswith("Z")
        assert "rejected_pk" not in item
        decoded = Image.open(io.BytesIO(_shard_bytes(aws, item)))
        assert decoded.format == "JPEG" and decoded.size == out
    assert jpeg_item["source_key"] == jpeg_key


def test_shard_holds_lineage_json_beside_each_image(aws, ingest):
    # GIVEN one good image
    record = put_raw(aws.s3, "a.jpg", encode(picture()))

    # WHEN it is ingested
    ingest.handler(sqs_event(record), FakeContext())

    # THEN the shard's .json member carries the source lineage
    [shard_key] = shard_keys(aws.s3)
    data = aws.s3.get_object(Bucket=PROCESSED_BUCKET, Key=shard_key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        [json_name] = [n for n in tar.getnames() if n.endswith(".json")]
        lineage = json.load(tar.extractfile(json_name))
    assert lineage["image_id"] == _image_id("a.jpg", record)
    assert lineage["source_version_id"] == json.loads(record["body"])["detail"]["object"]["version-id"]
    assert (lineage["out_width"], lineage["out_height"]) == (512, 384)


@pytest.mark.parametrize(
    ("env", "data", "reason"),
    [
        ({}, encode(picture((800, 600)))[:5000], "truncated"),
        ({}, b"just some text, not an image\n" * 10, "not_an_image"),
        ({}, encode(picture((64, 64)), "GIF"), "format_not_allowed"),
        ({"MAX_INPUT_BYTES": "1000"}, encode(picture((200, 200))), "too_large_bytes"),
        ({"MAX_PIXELS": "10000"}, encode(picture((200, 200))), "too_many_pixels"),
        ({}, encode(picture((20, 64))), "too_small"),
    ],
)
def test_invalid_image_is_quarantined_recorded_and_not_a_failure(aws, load, env, data, reason):
    # GIVEN an invalid image in a versioned raw bucket
    ingest = load(**env)
    key = "uploads/bad.img"
    record = put_raw(aws.s3, key, data)
    version_id = json.loads(record["body"])["detail"]["object"]["version-id"]

    # WHEN it is ingested
    result = ingest.handler(sqs_event(record), FakeContext())

    # THEN the batch does not fail, no shard is written, and the catalog says why
    assert result == {"batchItemFailures": []}
    assert shard_keys(aws.s3) == []
    item = catalog_items(aws.ddb)[_image_id(key, record)]
    assert (item["status"], item["reason"]) == ("REJECTED", reason)
    assert item["quarantine_key"] == f"quarantine/{key}"
    assert item["detail"]
    # AND the quarantine copy holds the same bytes with the reason in its metadata
    copy = aws.s3.get_object(Bucket=RAW_BUCKET, Key=f"quarantine/{key}")
    assert copy["Body"].read() == data
    assert copy["Metadata"]["reject-reason"] == reason
    assert copy["Metadata"]["source-version-id"] == version_id
    # AND the original is untouched: same single version, same bytes
    versions = aws.s3.list_object_versions(Bucket=RAW_BUCKET, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in versions] == [version_id]
    assert aws.s3.get_object(Bucket=RAW_BUCKET, Key=key)["Body"].read() == data
    # AND the reject is in the sparse rejected-index
    found = aws.ddb.query(
        TableName=TABLE,
        IndexName="rejected-index",
        KeyConditionExpression="rejected_pk = :r",
        ExpressionAttributeValues={":r": {"S": "REJECTED"}},
    )["Items"]
    assert [i["image_id"]["S"] for i in found] == [_image_id(key, record)]


def test_only_rejected_items_are_in_the_rejected_index(aws, ingest):
    # GIVEN a batch of two good and two bad images
    records = [
        put_raw(aws.s3, "good1.jpg", encode(picture())),
        put_raw(aws.s3, "bad1.jpg", b"not an image"),
        put_raw(aws.s3, "good2.png", encode(picture(), "PNG")),
        put_raw(aws.s3, "bad2.jpg", encode(picture())[:300]),
    ]

    # WHEN it is ingested
    ingest.handler(sqs_event(*records), FakeContext())

    # THEN the GSI lists exactly the two rejects
    found = aws.ddb.query(
        TableName=TABLE,
        IndexName="rejected-index",
        KeyConditionExpression="rejected_pk = :r",
        ExpressionAttributeValues={":r": {"S": "REJECTED"}},
    )["Items"]
    assert sorted(i["source_key"]["S"] for i in found) == ["bad1.jpg", "bad2.jpg"]
    assert len(catalog_items(aws.ddb)) == 4


def test_redelivered_event_makes_no_second_item_or_shard_entry(aws, ingest):
    # GIVEN an image already ingested once
    record = put_raw(aws.s3, "dup.jpg", encode(picture()))
    assert ingest.handler(sqs_event(record), FakeContext()) == {"batchItemFailures": []}
    [first_shard] = shard_keys(aws.s3)

    # WHEN SQS delivers the same event again, twice in one batch
    again = [sqs_record(record["body"]), sqs_record(record["body"])]
    result = ingest.handler(sqs_event(*again), FakeContext())

    # THEN both copies succeed, and there is still one item and one shard with one image
    assert result == {"batchItemFailures": []}
    assert list(catalog_items(aws.ddb)) == [_image_id("dup.jpg", record)]
    assert shard_keys(aws.s3) == [first_shard]
    assert len(shard_members(aws.s3, first_shard)) == 2


def test_duplicates_within_one_batch_are_packed_once(aws, ingest):
    # GIVEN one event delivered twice in the same batch
    record = put_raw(aws.s3, "twice.jpg", encode(picture()))

    # WHEN the batch is ingested
    result = ingest.handler(sqs_event(record, sqs_record(record["body"])), FakeContext())

    # THEN both messages succeed and the shard holds the image once
    assert result == {"batchItemFailures": []}
    [shard] = shard_keys(aws.s3)
    assert len(shard_members(aws.s3, shard)) == 2


def test_racing_duplicate_loses_the_conditional_write_and_keeps_the_first_item(aws, ingest, monkeypatch):
    # GIVEN a catalog check that misses an item written meanwhile by another container
    record = put_raw(aws.s3, "race.jpg", encode(picture()))
    ingest.handler(sqs_event(record), FakeContext())
    first = catalog_items(aws.ddb)[_image_id("race.jpg", record)]
    monkeypatch.setattr(ingest.catalog, "existing_ids", lambda *args: set())

    # WHEN the event is processed again
    result = ingest.handler(sqs_event(sqs_record(record["body"])), FakeContext())

    # THEN it is a success and the first catalog item is unchanged
    assert result == {"batchItemFailures": []}
    assert catalog_items(aws.ddb)[_image_id("race.jpg", record)] == first


def test_gps_exif_xmp_and_comments_are_stripped(aws, ingest):
    # GIVEN a JPEG with EXIF GPS, XMP and a comment
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>Jane Doe</dc:creator></x:xmpmeta>'
    data = encode(picture(), exif=exif, xmp=xmp, comment=b"taken by Jane Doe")
    assert b"Jane Doe" in data and b"Exif" in data
    record = put_raw(aws.s3, "gps.jpg", data)

    # WHEN it is ingested
    ingest.handler(sqs_event(record), FakeContext())

    # THEN the shard's JPEG has no APP1 (EXIF/XMP) or COM segment and none of the text
    out = _shard_bytes(aws, catalog_items(aws.ddb)[_image_id("gps.jpg", record)])
    markers = jpeg_markers(out)
    assert 0xE1 not in markers and 0xFE not in markers, [hex(m) for m in markers]
    assert b"Exif" not in out and b"Jane Doe" not in out and b"PhoneMaker" not in out
    assert not Image.open(io.BytesIO(out)).getexif()


def test_exif_orientation_is_applied(aws, ingest):
    # GIVEN a 640x480 stored image whose EXIF says "rotate 90 clockwise to display" (6)
    exif = Image.Exif()
    exif[0x0112] = 6
    record = put_raw(aws.s3, "rotated.jpg", encode(picture((640, 480)), exif=exif))

    # WHEN it is ingested
    ingest.handler(sqs_event(record), FakeContext())

    # THEN width and height are swapped and the stored top (red) is now on the right
    item = catalog_items(aws.ddb)[_image_id("rotated.jpg", record)]
    assert (item["width"], item["height"], item["out_width"], item["out_height"]) == (480, 640, 384, 512)
    out = Image.open(io.BytesIO(_shard_bytes(aws, item))).convert("RGB")
    assert out.size == (384, 512)
    right, left = out.getpixel((300, 256)), out.getpixel((80, 256))
    assert right[0] > 200 and right[2] < 60, right
    assert left[2] > 200 and left[0] < 60, left


def test_poison_message_fails_alone(aws, ingest):
    # GIVEN a batch with an unparseable body, an event of the wrong type and a good image
    good = put_raw(aws.s3, "good.jpg", encode(picture()))
    poison = sqs_record("{not json", message_id="poison-1")
    wrong = json.loads(good["body"]) | {"detail-type": "Object Deleted"}
    wrong_type = sqs_record(json.dumps(wrong), message_id="poison-2")

    # WHEN it is ingested
    result = ingest.handler(sqs_event(poison, good, wrong_type), FakeContext())

    # THEN only the poison messages are reported, and the good image is processed
    assert result == {"batchItemFailures": [{"itemIdentifier": "poison-1"}, {"itemIdentifier": "poison-2"}]}
    assert catalog_items(aws.ddb)[_image_id("good.jpg", good)]["status"] == "PROCESSED"


def test_transient_s3_error_is_retried_and_the_image_processed(aws, ingest):
    # GIVEN S3 answers the first GetObject with 503 SlowDown
    record = put_raw(aws.s3, "flaky.jpg", encode(picture()))
    calls = _fail_requests(ingest._client("s3"), "GetObject", 503, "SlowDown", times=1)

    # WHEN the image is ingested
    result = ingest.handler(sqs_event(record), FakeContext())

    # THEN botocore retried it and the image is PROCESSED
    assert len(calls) == 2
    assert result == {"batchItemFailures": []}
    assert catalog_items(aws.ddb)[_image_id("flaky.jpg", record)]["status"] == "PROCESSED"


def test_persistent_s3_error_fails_that_record_only(aws, ingest):
    # GIVEN GetObject of one key is always denied
    bad = put_raw(aws.s3, "denied.jpg", encode(picture()))
    bad["messageId"] = "denied-1"
    good = put_raw(aws.s3, "fine.jpg", encode(picture()))
    _fail_requests(ingest._client("s3"), "GetObject", 403, "AccessDenied", times=None, url_part="denied.jpg")

    # WHEN both are ingested in one batch
    result = ingest.handler(sqs_event(bad, good), FakeContext())

    # THEN only the denied record fails (SQS retries it, then the DLQ), and it has no catalog item
    assert result == {"batchItemFailures": [{"itemIdentifier": "denied-1"}]}
    items = catalog_items(aws.ddb)
    assert _image_id("denied.jpg", bad) not in items
    assert items[_image_id("fine.jpg", good)]["status"] == "PROCESSED"


def test_failed_shard_put_fails_processed_records_but_not_rejects(aws, ingest):
    # GIVEN the shard PUT is always denied
    good = put_raw(aws.s3, "good.jpg", encode(picture()))
    good["messageId"] = "good-1"
    bad = put_raw(aws.s3, "bad.jpg", b"text")
    _fail_requests(ingest._client("s3"), "PutObject", 403, "AccessDenied", times=None, url_part=PROCESSED_BUCKET)

    # WHEN a batch with a good and an invalid image is ingested
    result = ingest.handler(sqs_event(good, bad), FakeContext())

    # THEN the good image fails with no catalog item, and the reject is still recorded
    assert result == {"batchItemFailures": [{"itemIdentifier": "good-1"}]}
    items = catalog_items(aws.ddb)
    assert list(items) == [_image_id("bad.jpg", bad)]
    assert items[_image_id("bad.jpg", bad)]["status"] == "REJECTED"


def test_object_gone_before_processing_is_recorded_as_missing(aws, ingest):
    # GIVEN an event for an object version that no longer exists
    record = sqs_record(event_body("gone.jpg", 1234, "etag", "no-such-version"))

    # WHEN it is ingested
    result = ingest.handler(sqs_event(record), FakeContext())

    # THEN it is recorded as rejected with nothing to quarantine, and not retried
    assert result == {"batchItemFailures": []}
    item = catalog_items(aws.ddb)[_image_id("gone.jpg", version="no-such-version")]
    assert (item["status"], item["reason"]) == ("REJECTED", "source_missing")
    assert "quarantine_key" not in item


def test_quarantine_copies_are_never_ingested(aws, ingest):
    # GIVEN the event S3 sends for the function's own quarantine copy
    record = put_raw(aws.s3, "quarantine/uploads/bad.img", b"text")

    # WHEN it is ingested
    result = ingest.handler(sqs_event(record), FakeContext())

    # THEN it is skipped: no catalog item, no second quarantine copy
    assert result == {"batchItemFailures": []}
    assert catalog_items(aws.ddb) == {}
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=RAW_BUCKET, Prefix="quarantine/quarantine/")


@pytest.mark.parametrize("name", ["PROCESSED_BUCKET", "CATALOG_TABLE"])
def test_missing_required_env_var_fails_at_import_naming_it(load, monkeypatch, name):
    # GIVEN the function's environment without a required variable
    monkeypatch.delenv(name)

    # WHEN the module is imported (Lambda's init) THEN a KeyError names the variable
    with pytest.raises(KeyError, match=name):
        load()


def test_non_integer_setting_is_rejected_by_name(load):
    with pytest.raises(ValueError, match="TRAINING_IMAGE_SIZE"):
        load(TRAINING_IMAGE_SIZE="big")


