"""Pure builders for the image-ingest tests: SQS-shaped EventBridge events and in-memory images."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

RAW_BUCKET = "raw-images"
PROCESSED_BUCKET = "processed-images"
TABLE = "image-catalog"
EVENT_TIME = "2026-11-29T03:00:00Z"
PARTITION = "2026-11-29"
NAMESPACE = "MLPlatform/ml-pipeline-test"
# Every variable the function requires (the names in functions/image_ingest/environment.py), with the
# stack's defaults; the memory size is what Lambda sets itself.
FUNCTION_ENV = {
    "PROCESSED_BUCKET": PROCESSED_BUCKET,
    "CATALOG_TABLE": TABLE,
    "RAW_PREFIX": "incoming/",
    "QUARANTINE_PREFIX": "quarantine/",
    "SHARD_PREFIX": "shards/",
    "LABEL_PATH_SEGMENT": "0",
    "TRAINING_IMAGE_SIZE": "512",
    "JPEG_QUALITY": "90",
    "MAX_INPUT_BYTES": str(50 * 1024 * 1024),
    "MAX_PIXELS": "60000000",
    "MAX_PIXELS_PER_BYTE": "1000",
    "MIN_DIMENSION": "32",
    "ALLOWED_FORMATS": "JPEG,PNG,WEBP",
    "WORKERS": "4",
    "METRIC_NAMESPACE": NAMESPACE,
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
}


@dataclass
class FakeContext:
    aws_request_id: str = "req-1234"
    function_name: str = "image-ingest"


def put_raw(s3: Any, key: str, data: bytes) -> dict[str, Any]:
    """Upload to the raw bucket and return the SQS record S3 -> EventBridge -> SQS would deliver."""
    response = s3.put_object(Bucket=RAW_BUCKET, Key=key, Body=data)
    return sqs_record(event_body(key, len(data), response["ETag"].strip('"'), response["VersionId"]))


def event_body(key: str, size: int | None, etag: str, version_id: str | None) -> str:
    obj: dict[str, Any] = {"key": key, "etag": etag, "sequencer": "0062E99A88DC407460"}
    if size is not None:
        obj["size"] = size
    if version_id is not None:
        obj["version-id"] = version_id
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": EVENT_TIME,
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{RAW_BUCKET}"],
            "detail": {
                "version": "0",
                "bucket": {"name": RAW_BUCKET},
                "object": obj,
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "reason": "PutObject",
            },
        }
    )


def sqs_record(body: str, message_id: str | None = None) -> dict[str, Any]:
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:image-ingest",
        "awsRegion": "us-east-1",
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def picture(size: tuple[int, int] = (640, 480), mode: str = "RGB") -> Image.Image:
    """Top half red, bottom half blue, a white square top-left: orientation is visible."""
    img = Image.new("RGB", size, (0, 0, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size[0], size[1] // 2], fill=(255, 0, 0))
    draw.rectangle([0, 0, size[0] // 8, size[1] // 8], fill=(255, 255, 255))
    return img.convert(mode)


def encode(img: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def _plain(item: dict[str, Any]) -> dict[str, str | int]:
    return {k: v.get("S", int(v["N"]) if "N" in v else None) for k, v in item.items()}


def catalog_items(ddb: Any) -> dict[str, dict[str, str | int]]:
    """The catalog's image items (not the daily statistics items) as plain dicts keyed by image_id."""
    items = ddb.scan(TableName=TABLE)["Items"]
    return {i["image_id"]["S"]: _plain(i) for i in items if not i["partition_date"]["S"].startswith("stats#")}


def statistics(ddb: Any, date: str = PARTITION) -> dict[str, str | int] | None:
    """The daily statistics item of `date` (contract 3), or None."""
    key = {"partition_date": {"S": f"stats#{date}"}, "image_id": {"S": "#totals"}}
    item = ddb.get_item(TableName=TABLE, Key=key).get("Item")
    return _plain(item) if item else None


def shard_keys(s3: Any) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=PROCESSED_BUCKET).get("Contents", [])]


def shard_members(s3: Any, key: str) -> list[str]:
    data = s3.get_object(Bucket=PROCESSED_BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes of a JPEG's segments up to the start of scan (0xE1 = APP1 EXIF/XMP, 0xFE = COM)."""
    markers, pos = [], 2
    while pos < len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return markers
