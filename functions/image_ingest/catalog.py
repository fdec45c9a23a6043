"""The data catalog: one DynamoDB item per source image version, and the two calls that use it.

Keys: `partition_date` (the event's UTC date, so "all images of a day" is one Query) and
`image_id` = "{bucket}/{key}#{version_id}". Items are written with attribute_not_exists, so a
redelivered event never makes a second item; the catalog is the source of truth and a shard
member no item points at is an orphan, not data. Only rejected items carry `rejected_pk` and
`rejected_at`, so the sparse "rejected-index" GSI costs writes for rejects alone. Items are kept
to plain strings and numbers, well under 1 KB (1 WRU) for ordinary keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

PROCESSED = "PROCESSED"
REJECTED = "REJECTED"
_BATCH_GET_MAX = 100  # DynamoDB's BatchGetItem limit
_UNPROCESSED_TRIES = 4
_DETAIL_MAX = 300


@dataclass(frozen=True)
class Source:
    """One S3 object version named by an event: what the catalog item's lineage is built from."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int | None
    partition_date: str  # YYYY-MM-DD, UTC, from the event time
    event_time: str

    @property
    def image_id(self) -> str:
        return f"{self.bucket}/{self.key}#{self.version_id or 'null'}"

    def lineage(self) -> dict[str, object]:
        return {
            "image_id": self.image_id,
            "partition_date": self.partition_date,
            "event_time": self.event_time,
            "source_bucket": self.bucket,
            "source_key": self.key,
            "source_version_id": self.version_id or "null",
            "source_etag": self.etag,
            "source_size": self.size,
        }


def processed_item(source: Source, fields: dict[str, object], processed_at: str) -> dict[str, Any]:
    """`fields`: sha256, format, width, height, out_width, out_height, shard_key, shard_offset, shard_length."""
    return _marshal({**source.lineage(), **fields, "status": PROCESSED, "processed_at": processed_at})


def rejected_item(
    source: Source, reason: str, detail: str, quarantine_key: str | None, sha256: str | None, processed_at: str
) -> dict[str, Any]:
    return _marshal(
        {
            **source.lineage(),
            "status": REJECTED,
            "reason": reason,
            "detail": detail[:_DETAIL_MAX],
            "quarantine_key": quarantine_key,
            "sha256": sha256,
            "processed_at": processed_at,
            "rejected_pk": REJECTED,
            "rejected_at": processed_at,
        }
    )


def existing_ids(client: Any, table: str, sources: list[Source]) -> set[str]:
    """Image ids already catalogued. Keys still unprocessed after a few tries count as new:
    the conditional write stops a duplicate item anyway, at the price of an orphan shard member."""
    keys = {s.image_id: {"partition_date": {"S": s.partition_date}, "image_id": {"S": s.image_id}} for s in sources}
    found: set[str] = set()
    pending = list(keys.values())
    for start in range(0, len(pending), _BATCH_GET_MAX):
        request: dict[str, Any] = {
            table: {"Keys": pending[start : start + _BATCH_GET_MAX], "ProjectionExpression": "image_id"}
        }
        for attempt in range(_UNPROCESSED_TRIES):
            response = client.batch_get_item(RequestItems=request)
            found.update(item["image_id"]["S"] for item in response["Responses"].get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt)
    return found


def put_new(client: Any, table: str, item: dict[str, Any]) -> bool:
    """Write the item unless one with its key exists; False means a duplicate delivery."""
    try:
        client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(image_id)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _marshal(values: dict[str, object]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue  # DynamoDB has no use for empty attributes; absent reads the same
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"catalog attribute {name} must be str or int, got {type(value).__name__}")
        item[name] = {"S": value} if isinstance(value, str) else {"N": str(value)}
    return item
