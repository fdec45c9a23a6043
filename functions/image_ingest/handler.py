"""Lambda entry point: ingest raw images named by S3 -> EventBridge -> SQS events into shards.

Per batch: parse each SQS record's EventBridge body, drop the images the catalog already holds
(BatchGetItem), fetch and preprocess the rest in a few threads (S3 waits overlap; Pillow releases
the GIL while decoding), quarantine invalid images, PUT one shard for the batch, then write the
catalog items conditionally. Order matters for crashes: if the function dies after the shard PUT
and before the catalog writes, SQS redelivers, the images are processed again into a new shard,
and the first shard's members are orphans that no catalog item points at - harmless, because the
catalog is the source of truth. Invalid images are not failures; a record fails (and, after the
queue's maxReceiveCount, lands in the DLQ) only if its body is unparseable or its AWS calls still
fail after botocore's retries. Powertools' BatchProcessor is not used: it handles records one by
one, and one shard per batch needs the whole batch before the shard is written.
"""

from __future__ import annotations

import hashlib
import json
import os
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
import catalog
import imaging
import shards
from catalog import Source
from jsonlog import JsonLogger

_COPY_OBJECT_MAX = 5 * 1024**3  # larger sources need a multipart copy
_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404"}


@dataclass(frozen=True)
class Settings:
    """The function's environment, read once per container; required names fail with KeyError."""

    processed_bucket: str
    catalog_table: str
    quarantine_prefix: str
    shard_prefix: str
    workers: int
    limits: imaging.Limits

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] = os.environ) -> Settings:
        return cls(
            processed_bucket=env["PROCESSED_BUCKET"],
            catalog_table=env["CATALOG_TABLE"],
            quarantine_prefix=env.get("QUARANTINE_PREFIX", "quarantine/"),
            shard_prefix=env.get("SHARD_PREFIX", "shards/"),
            workers=_int(env, "WORKERS", 4),
            limits=imaging.Limits(
                target_size=_int(env, "TARGET_SIZE", 512),
                jpeg_quality=_int(env, "JPEG_QUALITY", 90),
                max_input_bytes=_int(env, "MAX_INPUT_BYTES", 52428800),
                max_pixels=_int(env, "MAX_PIXELS", 60000000),
                min_dimension=_int(env, "MIN_DIMENSION", 32),
                allowed_formats=tuple(
                    f.strip().upper() for f in env.get("ALLOWED_FORMATS", "JPEG,PNG,WEBP").split(",") if f.strip()
                ),
            ),
        )


def _int(env: os._Environ[str] | dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


SETTINGS = Settings.from_env()
log = JsonLogger("image_ingest", os.environ.get("LOG_LEVEL", "INFO"))

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


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    log.set_request_id(getattr(context, "aws_request_id", None))
    s3, ddb = _client("s3"), _client("dynamodb")
    failed: set[str] = set()
    messages: dict[str, list[str]] = {}  # image id -> message ids (SQS may deliver one twice)
    sources: dict[str, Source] = {}
    for record in event.get("Records", []):
        message_id = record.get("messageId", "")
        try:
            source = parse_body(record["body"])
        except (KeyError, TypeError, ValueError) as exc:
            log.error("poison message", message_id=message_id, error=repr(exc))
            failed.add(message_id)
            continue
        if source.key.startswith(SETTINGS.quarantine_prefix):
            # Our own quarantine copies land in the raw bucket; never ingest them (a loop otherwise).
            log.warning("skipped quarantine object", message_id=message_id, key=source.key)
            continue
        messages.setdefault(source.image_id, []).append(message_id)
        sources[source.image_id] = source

    done = catalog.existing_ids(ddb, SETTINGS.catalog_table, list(sources.values()))
    for image_id in done:
        log.info("already catalogued", image_id=image_id)
    todo = [s for image_id, s in sources.items() if image_id not in done]

    with ThreadPoolExecutor(max_workers=SETTINGS.workers) as pool:
        outcomes = list(pool.map(lambda source: _ingest(s3, source), todo))
        now = datetime.now(UTC)
        _put_shard(s3, [o for o in outcomes if o.processed], now)
        list(pool.map(lambda outcome: _record(ddb, outcome, now), outcomes))

    for outcome in outcomes:
        if outcome.error:
            failed.update(messages[outcome.source.image_id])
    log.info(
        "batch done",
        records=len(event.get("Records", [])),
        processed=sum(1 for o in outcomes if o.processed and not o.error),
        rejected=sum(1 for o in outcomes if o.rejected and not o.error),
        duplicates=len(done),
        failed=len(failed),
    )
    return {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failed)]}


def parse_body(body: str) -> Source:
    """An EventBridge "Object Created" event; its object key is not URL-encoded (unlike S3's
    direct notifications), so it is used as it is."""
    event = json.loads(body)
    if event["detail-type"] != "Object Created":
        raise ValueError(f"unexpected detail-type {event['detail-type']!r}")
    detail, obj = event["detail"], event["detail"]["object"]
    when = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).astimezone(UTC)
    size = obj.get("size")
    return Source(
        bucket=detail["bucket"]["name"],
        key=obj["key"],
        version_id=obj.get("version-id"),
        etag=obj.get("etag"),
        size=int(size) if size is not None else None,
        partition_date=when.strftime("%Y-%m-%d"),
        event_time=event["time"],
    )


def _ingest(s3: Any, source: Source) -> Outcome:
    """Fetch, preprocess and, if invalid, quarantine one image; never raises."""
    outcome = Outcome(source)
    try:
        data = _fetch(s3, source)
        outcome.sha256 = hashlib.sha256(data).hexdigest()
        outcome.processed = imaging.preprocess(data, SETTINGS.limits)
    except imaging.ImageRejected as rejected:
        outcome.rejected = rejected
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in _MISSING_CODES:
            return _failed(outcome, exc)
        # Gone before we read it (a permanent delete): nothing to quarantine, nothing to retry.
        outcome.rejected = imaging.ImageRejected("source_missing", str(exc))
        return outcome
    except Exception as exc:  # noqa: BLE001 - one bad record must not sink the batch
        return _failed(outcome, exc)
    if outcome.rejected:
        try:
            outcome.quarantine_key = _quarantine(s3, source, outcome.rejected)
        except Exception as exc:  # noqa: BLE001 - retried by SQS; the source is untouched
            return _failed(outcome, exc)
    return outcome


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


def _quarantine(s3: Any, source: Source, rejected: imaging.ImageRejected) -> str:
    """Copy the source version to the quarantine prefix of its own bucket, reason in metadata."""
    key = SETTINGS.quarantine_prefix + source.key
    copy_source = {"Bucket": source.bucket, "Key": source.key}
    if source.version_id:
        copy_source["VersionId"] = source.version_id
    # User metadata travels as HTTP headers: ASCII, 2 KB in all. The source key is the quarantine
    # key less the prefix, so only the reason, a short detail and the version are added.
    extra = {
        "MetadataDirective": "REPLACE",
        "Metadata": {
            "reject-reason": rejected.reason,
            "reject-detail": quote(rejected.detail[:200], safe=" :/,.-_()<>=x"),
            "source-version-id": source.version_id or "null",
        },
    }
    if source.size is not None and source.size > _COPY_OBJECT_MAX:
        s3.copy(copy_source, source.bucket, key, ExtraArgs=extra)
    else:
        s3.copy_object(CopySource=copy_source, Bucket=source.bucket, Key=key, **extra)
    log.warning(
        "quarantined", image_id=source.image_id, reason=rejected.reason, detail=rejected.detail, quarantine_key=key
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
    log.info("shard written", shard_key=key, images=len(members), bytes=len(data))


def _record(ddb: Any, outcome: Outcome, now: datetime) -> None:
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
        if not catalog.put_new(ddb, SETTINGS.catalog_table, item):
            log.info("duplicate delivery, catalog item kept", image_id=outcome.source.image_id)
    except Exception as exc:  # noqa: BLE001 - reported per record
        _failed(outcome, exc)


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
    log.error("record failed", image_id=outcome.source.image_id, error=outcome.error)
    return outcome
