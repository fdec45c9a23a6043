"""The data catalog: one DynamoDB item per source image version, and the two calls that use it.

Keys: `partition_date` (the event's UTC date, so "all images of a day" is one Query) and
`image_id`, the SHA-256 (hex) of "{bucket}/{key}#{version_id}": fixed length, because S3 keys of up
to 1,024 bytes would overflow DynamoDB's 1,024-byte sort key (issue 8); the full key stays in
`source_key`. Items are written with attribute_not_exists, so a redelivered event never makes a
second item; the catalog is the source of truth and a shard member no item points at is an orphan,
not data. Only rejected items carry `rejected_pk` and `rejected_at`, so the sparse "rejected-index"
GSI costs writes for rejects alone. A labelled image carries `label` (contract 1 of the brief).

The daily statistics item (contract 3): `partition_date = "stats#YYYY-MM-DD"`, `image_id = "#totals"`,
top-level numbers `accepted`, `rejected`, `unlabelled` and `label:<label>`, added to with one
UpdateItem ADD per batch and date, counting only images this invocation newly catalogued.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

PROCESSED = "PROCESSED"
REJECTED = "REJECTED"
_BATCH_GET_MAX = 100  # DynamoDB's BatchGetItem limit
_UNPROCESSED_TRIES = 4
_DETAIL_MAX = 300
STATS_PREFIX = "stats#"
STATS_SORT_KEY = "#totals"
LABEL_ATTRIBUTE_PREFIX = "label:"
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def label_of(key: str, raw_prefix: str, segment: int) -> str | None:
    """The label of an upload at `<raw_prefix><...><label>/<file>`: path segment `segment` after the
    prefix, lower-cased, when a segment follows it and it matches the label pattern; else None."""
    if not key.startswith(raw_prefix):
        return None
    parts = key[len(raw_prefix) :].split("/")
    if len(parts) < segment + 2:
        return None  # the label segment must be a folder, with the file (or more folders) after it
    label = parts[segment].lower()
    return label if _LABEL.match(label) else None


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
    label: str | None = None

    @property
    def image_id(self) -> str:
        return hashlib.sha256(f"{self.bucket}/{self.key}#{self.version_id or 'null'}".encode()).hexdigest()

    def lineage(self) -> dict[str, object]:
        """What the shard's JSON holds beside each image (with `label`: null when unlabelled)."""
        return {
            "image_id": self.image_id,
            "label": self.label,
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


def statistics_updates(table: str, newly: list[tuple[Source, bool]]) -> list[dict[str, Any]]:
    """UpdateItem requests (one per partition date) adding this batch's newly catalogued images:
    `newly` holds (source, accepted) pairs; labels count accepted images only."""
    per_date: dict[str, Counter[str]] = {}
    for source, accepted in newly:
        counts = per_date.setdefault(source.partition_date, Counter())
        if not accepted:
            counts["rejected"] += 1
            continue
        counts["accepted"] += 1
        counts[LABEL_ATTRIBUTE_PREFIX + source.label if source.label else "unlabelled"] += 1
    requests = []
    for date, counts in sorted(per_date.items()):
        names = {f"#a{i}": name for i, name in enumerate(sorted(counts))}
        requests.append(
            {
                "TableName": table,
                "Key": {"partition_date": {"S": STATS_PREFIX + date}, "image_id": {"S": STATS_SORT_KEY}},
                # ADD works on top-level number attributes only, hence one attribute per label.
                "UpdateExpression": "ADD " + ", ".join(f"{alias} :v{alias[2:]}" for alias in names),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {f":v{alias[2:]}": {"N": str(counts[n])} for alias, n in names.items()},
            }
        )
    return requests


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
