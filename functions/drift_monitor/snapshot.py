"""The production model's training snapshot: which one, what it holds, and its drift baseline.

``read_snapshot`` is the one place that knows the snapshot document's layout (the training workflow
writes it); adapt it there if the layout changes.
"""
from __future__ import annotations

import io
import json
import logging
import posixpath
import random
import tarfile
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import stats

log = logging.getLogger()


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    bucket: str  # where the shards are
    label_counts: dict[str, int]
    train_shards: tuple[str, ...]


def read_snapshot(doc: dict[str, Any], default_bucket: str) -> Snapshot:
    """The training workflow's ``snapshot.json``: ``snapshot_id``, ``label_counts`` {label: n},
    ``splits`` {"train": [shard keys], ...} and, optionally, ``bucket`` (of the shards)."""
    try:
        counts = {str(k): int(v) for k, v in doc["label_counts"].items()}
        shards = tuple(str(k) for k in doc["splits"]["train"])
        return Snapshot(str(doc["snapshot_id"]), str(doc.get("bucket") or default_bucket), counts, shards)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"snapshot document is not in the expected layout: {exc!r}") from None


def production_snapshot_id(ddb: Any, table: str, model_name: str) -> Optional[str]:
    """Contract 4: the production version's ``snapshot_id`` (the newest if several claim production)."""
    response = ddb.query(
        TableName=table, IndexName="status-index",
        KeyConditionExpression="model_name = :m AND #s = :p",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":m": {"S": model_name}, ":p": {"S": "production"}})
    items = sorted(response.get("Items", []), key=lambda i: float(i.get("version", {}).get("N", "0")), reverse=True)
    for item in items:
        if "S" in item.get("snapshot_id", {}):
            return item["snapshot_id"]["S"]
    return None


def shard_images(tar_bytes: bytes) -> Iterator[bytes]:
    """The ``<key>.jpg`` members of a WebDataset shard (contract 2)."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                f = tar.extractfile(member)
                if f is not None:
                    yield f.read()


def compute_baseline(s3: Any, snapshot: Snapshot, sample_images: int, target_size: int, seed: str) -> dict:
    """Histograms of a sample of the snapshot's train images (whole shards, in a seeded random order,
    until ``sample_images`` are read) and the snapshot's label counts."""
    shards = list(snapshot.train_shards)
    random.Random(seed).shuffle(shards)
    hist, unreadable = stats.Histograms(), 0
    for key in shards:
        if hist.images >= sample_images:
            break
        body = s3.get_object(Bucket=snapshot.bucket, Key=key)["Body"].read()
        for data in shard_images(body):
            if hist.images >= sample_images:
                break
            try:
                hist.add(stats.image_features(data, target_size))
            except Exception:  # noqa: BLE001 - one bad image must not stop the baseline
                unreadable += 1
    if not hist.images:
        raise ValueError(f"snapshot {snapshot.snapshot_id}: no readable train images")
    return {"version": stats.BASELINE_VERSION, "snapshot_id": snapshot.snapshot_id, "target_size": target_size,
            "images": hist.images, "unreadable": unreadable, "features": hist.to_json(),
            "labels": snapshot.label_counts}


def baseline_usable(baseline: Any, snapshot_id: str, target_size: int) -> bool:
    if not isinstance(baseline, dict):
        return False
    features = baseline.get("features", {})
    return (baseline.get("version") == stats.BASELINE_VERSION and baseline.get("snapshot_id") == snapshot_id
            and baseline.get("target_size") == target_size
            and all(features.get(n, {}).get("edges") == list(e) for n, e in stats.FEATURE_EDGES.items()))


def baseline_key(snapshot_key: str) -> str:
    """The cached baseline lives beside the snapshot document."""
    return posixpath.join(posixpath.dirname(snapshot_key), "drift-baseline.json")


def snapshot_key(prefix: str, snapshot_id: str) -> str:
    """Where the training workflow writes a snapshot's document (``<prefix><id>/snapshot.json``)."""
    return f"{prefix}{snapshot_id}/snapshot.json"


def load_baseline(s3: Any, bucket: str, prefix: str, snapshot_id: str, sample_images: int, target_size: int) -> dict:
    """The snapshot's cached baseline, computed and stored on first use (or when its version changed)."""
    doc_key = snapshot_key(prefix, snapshot_id)
    key = baseline_key(doc_key)
    try:
        cached = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        cached = None
    if baseline_usable(cached, snapshot_id, target_size):
        return cached
    snapshot = read_snapshot(json.loads(s3.get_object(Bucket=bucket, Key=doc_key)["Body"].read()), bucket)
    log.info("computing drift baseline", extra={"snapshot_id": snapshot.snapshot_id, "key": key})
    baseline = compute_baseline(s3, snapshot, sample_images, target_size, seed=snapshot.snapshot_id)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(baseline).encode(), ContentType="application/json")
    return baseline
