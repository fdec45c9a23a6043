"""Lambda entry point: ingest raw images named by S3 -> EventBridge -> SQS events into shards.

Per batch: parse each SQS record's EventBridge body on its own (a malformed one fails alone), drop
the images the catalog already holds (BatchGetItem), fetch and preprocess the rest in a few threads
(S3 waits overlap; Pillow releases the GIL while decoding; decoded pixels are budgeted across the
threads), quarantine invalid images, PUT one shard for the batch, write the catalog items
conditionally, then add the newly catalogued images to the day's statistics item (one UpdateItem).
Order matters for crashes: if the function dies after the shard PUT and before the catalog writes,
SQS redelivers, the images are processed again into a new shard, and the first shard's members are
orphans that no catalog item points at - harmless, because the catalog is the source of truth.

Failures: an invalid image is not one (quarantined, catalogued as rejected). A deleted source is
catalogued as rejected (`source_missing`) with a warning and a metric. An error no retry can fix
(AWS refuses a key or an item) is final on the first try: catalogued as rejected where possible,
logged, counted in an alarmed metric, never retried. AccessDenied fails the record (SQS retries it,
then the DLQ) and is counted in an alarmed metric. Anything else fails the record for a retry.
Logging: the standard library; the Lambda runtime's JSON log format adds the request id and turns
`extra` fields into keys; the level comes from the function's logging config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

# Imported at module level so they load once per container, during init.
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# The function's own modules: top-level names, as Lambda puts the zip's root on sys.path.
import budget
import catalog
import environment as env
import imaging
import metric_names
import shards
from catalog import Source

_COPY_OBJECT_MAX = 5 * 1024**3  # larger sources need a multipart copy
_S3_KEY_MAX_BYTES = 1024
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404"})
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "403", "AllAccessDisabled"})
# Errors that a retry cannot fix: the request itself is refused (key, item or argument invalid).
_PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "KeyTooLongError",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidURI",
        "MetadataTooLarge",
        "InvalidObjectState",
        "ItemCollectionSizeLimitExceededException",
    }
)

log = logging.getLogger("image_ingest")


class Metrics:
    """Counts of one invocation, added to from the worker threads."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1


@dataclass(frozen=True)
class Settings:
    """The function's environment, read once per container; every name is required (KeyError)."""

    processed_bucket: str
    catalog_table: str
    raw_prefix: str
    quarantine_prefix: str
    shard_prefix: str
    label_path_segment: int
    workers: int
    metric_namespace: str
    limits: imaging.Limits

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] = os.environ) -> Settings:
        def number(name: str) -> int:
            raw = environ[name]
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None

        return cls(
            processed_bucket=environ[env.PROCESSED_BUCKET],
            catalog_table=environ[env.CATALOG_TABLE],
            raw_prefix=environ[env.RAW_PREFIX],
            quarantine_prefix=environ[env.QUARANTINE_PREFIX],
            shard_prefix=environ[env.SHARD_PREFIX],
            label_path_segment=number(env.LABEL_PATH_SEGMENT),
            workers=number(env.WORKERS),
            metric_namespace=environ[env.METRIC_NAMESPACE],
            limits=imaging.Limits(
                training_image_size=number(env.TRAINING_IMAGE_SIZE),
                jpeg_quality=number(env.JPEG_QUALITY),
                max_input_bytes=number(env.MAX_INPUT_BYTES),
                max_pixels=number(env.MAX_PIXELS),
                max_pixels_per_byte=number(env.MAX_PIXELS_PER_BYTE),
                min_dimension=number(env.MIN_DIMENSION),
                allowed_formats=tuple(f.strip().upper() for f in environ[env.ALLOWED_FORMATS].split(",") if f.strip()),
            ),
        )


SETTINGS = Settings.from_env()
# One budget for all worker threads of this container, sized from the function's memory (issue 8).
BUDGET = budget.DecodeBudget(budget.decode_budget_bytes(int(os.environ[env.LAMBDA_MEMORY_MB])))

_S3_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=3,
    read_timeout=20,
    max_pool_connections=2 * SETTINGS.workers,
)
_DDB_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=2 * SETTINGS.workers,
)
_clients: dict[str, Any] = {}


def _client(name: str) -> Any:
    # Created on the first invocation, not at import, so tests can mock AWS before the first call;
    # always from the main thread, because creating clients is not thread-safe.
    if name not in _clients:
        _clients[name] = boto3.client(name, config=_S3_CONFIG if name == "s3" else _DDB_CONFIG)
    return _clients[name]


@dataclass
class Outcome:
    """What happened to one source image: processed or rejected, unless error says it failed."""

    source: Source
    sha256: str | None = None
    processed: imaging.Preprocessed | None = None
    rejected: imaging.ImageRejected | None = None
    quarantine_key: str | None = None
    shard: dict[str, object] | None = None
    error: str | None = None
    catalogued: bool = False  # this invocation wrote its catalog item


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    s3, ddb = _client("s3"), _client("dynamodb")
    metrics = Metrics()
    failed: set[str] = set()
    messages: dict[str, list[str]] = {}  # image id -> message ids (SQS may deliver one twice)
    sources: dict[str, Source] = {}
    records = event.get("Records") if isinstance(event, dict) else None
    records = records if isinstance(records, list) else []
    for record in records:
        message_id = record.get("messageId") if isinstance(record, dict) else None
        message_id = message_id if isinstance(message_id, str) else ""
        try:
            source = parse_body(record["body"])
        except Exception as exc:  # noqa: BLE001 - any malformed record fails alone, never the batch
            log.error("poison message", extra={"message_id": message_id, "error": repr(exc)})
            failed.add(message_id)
            continue
        if source.key.startswith(SETTINGS.quarantine_prefix):
            # Our own quarantine copies land in the raw bucket; never ingest them (a loop otherwise).
            log.warning("skipped quarantine object", extra={"message_id": message_id, "key": source.key})
            continue
        messages.setdefault(source.image_id, []).append(message_id)
        sources[source.image_id] = source

    done = catalog.existing_ids(ddb, SETTINGS.catalog_table, list(sources.values()))
    for image_id in done:
        log.info("already catalogued", extra={"image_id": image_id})
    todo = [s for image_id, s in sources.items() if image_id not in done]

    with ThreadPoolExecutor(max_workers=SETTINGS.workers) as pool:
        outcomes = list(pool.map(lambda source: _ingest(s3, source, metrics), todo))
        now = datetime.now(UTC)
        _put_shard(s3, [o for o in outcomes if o.processed and not o.error], now)
        list(pool.map(lambda outcome: _record(ddb, outcome, now, metrics), outcomes))

    _add_statistics(ddb, [o for o in outcomes if o.catalogued], metrics)
    for outcome in outcomes:
        if outcome.error:
            failed.update(messages[outcome.source.image_id])
    _publish(metrics)
    log.info(
        "batch done",
        extra={
            "records": len(records),
            "processed": sum(1 for o in outcomes if o.processed and not o.error),
            "rejected": sum(1 for o in outcomes if o.rejected and not o.error),
            "duplicates": len(done),
            "failed": len(failed),
            "decode_budget_peak": BUDGET.peak,
        },
    )
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failed)]}


def _field(parent: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = parent.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def parse_body(body: Any) -> Source:
    """An EventBridge "Object Created" event; its object key is not URL-encoded (unlike S3's
    direct notifications), so it is used as it is. Every field is type-checked: a wrongly typed one
    raises ValueError for this record alone."""
    if not isinstance(body, str):
        raise ValueError(f"body must be a string, got {type(body).__name__}")
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("body is not a JSON object")
    if event.get("detail-type") != "Object Created":
        raise ValueError(f"unexpected detail-type {event.get('detail-type')!r}")
    detail = _field(event, "detail", dict)
    obj = _field(detail, "object", dict)
    key = _field(obj, "key", str)
    if not key:
        raise ValueError("key is empty")
    size = _field(obj, "size", int, required=False)
    if size is not None and size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    event_time = _field(event, "time", str)
    when = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"time has no time zone: {event_time!r}")
    return Source(
        bucket=_field(_field(detail, "bucket", dict), "name", str),
        key=key,
        version_id=_field(obj, "version-id", str, required=False),
        etag=_field(obj, "etag", str, required=False),
        size=size,
        partition_date=when.astimezone(UTC).strftime("%Y-%m-%d"),
        event_time=event_time,
        label=catalog.label_of(key, SETTINGS.raw_prefix, SETTINGS.label_path_segment),
    )


def _code(exc: BaseException) -> str | None:
    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None


def _ingest(s3: Any, source: Source, metrics: Metrics) -> Outcome:
    """Fetch, preprocess and, if invalid, quarantine one image; never raises."""
    outcome = Outcome(source)
    try:
        data = _fetch(s3, source)
        outcome.sha256 = hashlib.sha256(data).hexdigest()
        outcome.processed = imaging.preprocess(data, SETTINGS.limits, BUDGET)
    except imaging.ImageRejected as rejected:
        outcome.rejected = rejected
    except ClientError as exc:
        code = _code(exc)
        if code in _MISSING_CODES:
            # Deleted before we read it: nothing to quarantine, nothing to retry. With s3:ListBucket on
            # the raw prefix S3 answers 404 here; a 403 is a real denial (below).
            metrics.add(metric_names.SOURCE_MISSING)
            log.warning("source missing", extra={"image_id": source.image_id, "key": source.key, "error": code})
            outcome.rejected = imaging.ImageRejected("source_missing", str(exc))
            return outcome
        if code in _PERMANENT_CODES:
            outcome.rejected = _permanent(source, "read", exc, metrics)
            return outcome
        if code in _DENIED_CODES:
            metrics.add(metric_names.ACCESS_DENIED)
        return _failed(outcome, exc)
    except Exception as exc:  # noqa: BLE001 - one bad record must not sink the batch
        return _failed(outcome, exc)
    if outcome.rejected:
        try:
            outcome.quarantine_key = _quarantine(s3, source, outcome.rejected)
        except ClientError as exc:
            if _code(exc) not in _PERMANENT_CODES:
                if _code(exc) in _DENIED_CODES:
                    metrics.add(metric_names.ACCESS_DENIED)
                return _failed(outcome, exc)
            _permanent(source, "quarantine", exc, metrics)  # recorded as rejected, without a copy
        except Exception as exc:  # noqa: BLE001 - retried by SQS; the source is untouched
            return _failed(outcome, exc)
    return outcome


def _permanent(source: Source, step: str, exc: BaseException, metrics: Metrics) -> imaging.ImageRejected:
    metrics.add(metric_names.PERMANENT_ERRORS)
    log.error("permanent error, not retried", extra={"image_id": source.image_id, "step": step, "error": repr(exc)})
    return imaging.ImageRejected("permanent_error", f"{step}: {exc}")


def _fetch(s3: Any, source: Source) -> bytes:
    limit = SETTINGS.limits.max_input_bytes
    if source.size is not None and source.size > limit:
        raise imaging.ImageRejected("too_large_bytes", f"{source.size} bytes > {limit}")
    args = {"Bucket": source.bucket, "Key": source.key}
    if source.version_id:
        args["VersionId"] = source.version_id
    response = s3.get_object(**args)
    body = response["Body"]
    if response["ContentLength"] > limit:
        body.close()
        raise imaging.ImageRejected("too_large_bytes", f"{response['ContentLength']} bytes > {limit}")
    return body.read()


def quarantine_key(prefix: str, source: Source) -> str:
    """`<prefix><source key>`, or when that would pass S3's 1,024-byte key limit, the key cut on a
    character boundary and made unique with the image id's first 16 hex digits."""
    key = prefix + source.key
    if len(key.encode()) <= _S3_KEY_MAX_BYTES:
        return key
    suffix = "~" + source.image_id[:16]
    room = _S3_KEY_MAX_BYTES - len(prefix.encode()) - len(suffix)
    return prefix + source.key.encode()[:room].decode("utf-8", "ignore") + suffix


def _quarantine(s3: Any, source: Source, rejected: imaging.ImageRejected) -> str | None:
    """Copy the source version to the quarantine prefix of its own bucket, reason in metadata."""
    if rejected.reason in ("source_missing", "permanent_error"):
        return None
    key = quarantine_key(SETTINGS.quarantine_prefix, source)
    copy_source = {"Bucket": source.bucket, "Key": source.key}
    if source.version_id:
        copy_source["VersionId"] = source.version_id
    # User metadata travels as HTTP headers: ASCII, 2 KB in all. The catalog item (image-id) holds
    # the full source key, so only the reason, a short detail, the version and the id are added.
    extra = {
        "MetadataDirective": "REPLACE",
        "Metadata": {
            "reject-reason": rejected.reason,
            "reject-detail": quote(rejected.detail[:200], safe=" :/,.-_()<>=x"),
            "source-version-id": source.version_id or "null",
            "image-id": source.image_id,
        },
    }
    if source.size is not None and source.size > _COPY_OBJECT_MAX:
        s3.copy(copy_source, source.bucket, key, ExtraArgs=extra)
    else:
        s3.copy_object(CopySource=copy_source, Bucket=source.bucket, Key=key, **extra)
    log.warning(
        "quarantined",
        extra={"image_id": source.image_id, "reason": rejected.reason, "detail": rejected.detail, "quarantine_key": key},
    )
    return key


def _put_shard(s3: Any, processed: list[Outcome], now: datetime) -> None:
    """One PUT for the whole batch; on failure every image in it fails and SQS retries them."""
    if not processed:
        return
    members = [
        shards.Member(o.source.image_id, o.processed.data, {**o.source.lineage(), **_image_fields(o)})
        for o in processed
        if o.processed
    ]
    data, locations = shards.build(members)
    key = shards.object_key(SETTINGS.shard_prefix, now, data)
    try:
        s3.put_object(Bucket=SETTINGS.processed_bucket, Key=key, Body=data, ContentType="application/x-tar")
    except Exception as exc:  # noqa: BLE001 - reported per record below
        for outcome in processed:
            _failed(outcome, exc)
        return
    for outcome in processed:
        loc = locations[outcome.source.image_id]
        outcome.shard = {"shard_key": key, "shard_offset": loc.offset, "shard_length": loc.length}
    log.info("shard written", extra={"shard_key": key, "images": len(members), "bytes": len(data)})


def _record(ddb: Any, outcome: Outcome, now: datetime, metrics: Metrics) -> None:
    if outcome.error:
        return
    processed_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if outcome.processed and outcome.shard:
        item = catalog.processed_item(outcome.source, {**_image_fields(outcome), **outcome.shard}, processed_at)
    elif outcome.rejected:
        item = catalog.rejected_item(
            outcome.source,
            outcome.rejected.reason,
            outcome.rejected.detail,
            outcome.quarantine_key,
            outcome.sha256,
            processed_at,
        )
    else:
        return
    try:
        outcome.catalogued = catalog.put_new(ddb, SETTINGS.catalog_table, item)
        if not outcome.catalogued:
            log.info("duplicate delivery, catalog item kept", extra={"image_id": outcome.source.image_id})
    except ClientError as exc:
        if _code(exc) in _PERMANENT_CODES:
            # Final: a retry would only write another orphan shard member and quarantine copy.
            _permanent(outcome.source, "catalog", exc, metrics)
        else:
            _failed(outcome, exc)
    except Exception as exc:  # noqa: BLE001 - reported per record
        _failed(outcome, exc)


def _add_statistics(ddb: Any, catalogued: list[Outcome], metrics: Metrics) -> None:
    """One UpdateItem ADD per partition date (one per batch but around midnight) of this batch's
    newly catalogued images. A failure after botocore's retries is logged and alarmed, not retried:
    a redelivered batch finds its images catalogued and would add nothing anyway."""
    newly = [(o.source, o.processed is not None and o.shard is not None) for o in catalogued]
    for request in catalog.statistics_updates(SETTINGS.catalog_table, newly):
        try:
            ddb.update_item(**request)
        except Exception as exc:  # noqa: BLE001 - the images are catalogued; only the counts are short
            metrics.add(metric_names.STATISTICS_NOT_RECORDED)
            log.error("statistics not recorded", extra={"key": request["Key"]["partition_date"]["S"], "error": repr(exc)})


def _publish(metrics: Metrics) -> None:
    """One PutMetricData for the batch, only when something happened worth counting."""
    data = [{"MetricName": name, "Value": float(n), "Unit": "Count"} for name, n in sorted(metrics.counts.items()) if n]
    if not data:
        return
    try:
        _client("cloudwatch").put_metric_data(Namespace=SETTINGS.metric_namespace, MetricData=data)
    except Exception as exc:  # noqa: BLE001 - metrics must never fail the batch
        log.error("metrics not published", extra={"metrics": dict(metrics.counts), "error": repr(exc)})


def _image_fields(outcome: Outcome) -> dict[str, object]:
    pre = outcome.processed
    assert pre is not None
    return {
        "sha256": outcome.sha256,
        "format": pre.format,
        "width": pre.width,
        "height": pre.height,
        "out_width": pre.out_width,
        "out_height": pre.out_height,
    }


def _failed(outcome: Outcome, exc: BaseException) -> Outcome:
    outcome.error = repr(exc)
    log.error("record failed", extra={"image_id": outcome.source.image_id, "error": outcome.error})
    return outcome
