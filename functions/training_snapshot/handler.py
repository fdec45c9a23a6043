"""Training workflow, step 2: freeze the run's data as a snapshot and name the run's jobs.

Lists the shards of each day of the window (contract 3: ``<shardPrefix>YYYY/MM/DD/``), splits them into
train, validation and test by a hash of the shard key (the same shard always lands in the same split),
and writes the snapshot (``snapshot.json``) and one SageMaker manifest per split to the artifacts bucket.
The snapshot id is derived from the shard list, so a model version names exactly the data it saw.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from functools import lru_cache
from typing import Any

import boto3

logger = logging.getLogger()
SPLITS = ("train", "validation", "test")
TUNING_NAME_MAX = 32   # CreateHyperParameterTuningJob's limit
JOB_NAME_MAX = 63      # training and processing jobs


class SnapshotTooSmall(Exception):
    """Too few shards for every split to get one; the run fails (and alarms) rather than train on nothing."""


@lru_cache(maxsize=1)
def _s3():
    return boto3.client("s3")


def split_of(key: str, validation_share: float, test_share: float) -> str:
    point = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2 ** 32
    if point < test_share:
        return "test"
    if point < test_share + validation_share:
        return "validation"
    return "train"


def split(keys: list[str], validation_share: float, test_share: float) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for key in sorted(set(keys)):
        parts[split_of(key, validation_share, test_share)].append(key)
    empty = [s for s, shard_keys in parts.items() if not shard_keys]
    if empty:
        raise SnapshotTooSmall(f"{len(set(keys))} shards leave the {', '.join(empty)} split(s) empty")
    return parts


def snapshot_id(keys: list[str], last_day: str) -> str:
    digest = hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()[:12]
    return f"{last_day}-{digest}"


def job_names(prefix: str, run_id: str) -> dict[str, str]:
    """SageMaker names (``^[a-zA-Z0-9](-*[a-zA-Z0-9])*``) from any execution name, unique per run."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", run_id).strip("-") or "run"

    def fit(middle: str, limit: int) -> str:
        room = limit - len(prefix) - len(digest) - 2
        head = middle[:room].strip("-")
        return f"{prefix}-{head}-{digest}" if head else f"{prefix}-{digest}"

    return {"training_job_name": fit(slug, JOB_NAME_MAX), "processing_job_name": fit(f"eval-{slug}", JOB_NAME_MAX),
            "tuning_job_name": fit("tune", TUNING_NAME_MAX)}


def _list_shards(bucket: str, prefix: str, days: list[str]) -> list[str]:
    keys = []
    paginator = _s3().get_paginator("list_objects_v2")
    for day in days:
        day_prefix = f"{prefix}{day.replace('-', '/')}/"
        for page in paginator.paginate(Bucket=bucket, Prefix=day_prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".tar")]
    return keys


def _put_json(bucket: str, key: str, body: Any) -> str:
    _s3().put_object(Bucket=bucket, Key=key, Body=json.dumps(body, indent=1).encode(), ContentType="application/json")
    return f"s3://{bucket}/{key}"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processed, artifacts = os.environ["PROCESSED_BUCKET"], os.environ["ARTIFACTS_BUCKET"]
    snapshots, output = os.environ["SNAPSHOT_PREFIX"], os.environ["OUTPUT_PREFIX"]
    run_id, days = event["run_id"], event["days"]
    keys = _list_shards(processed, os.environ["SHARD_PREFIX"], days)
    parts = split(keys, float(os.environ["VALIDATION_SHARE"]), float(os.environ["TEST_SHARE"]))
    sid = snapshot_id(keys, days[-1])
    base = f"{snapshots}{sid}/"
    manifests = {f"{name}_manifest": _put_json(artifacts, f"{base}{name}.manifest",
                                               [{"prefix": f"s3://{processed}/"}, *shard_keys])
                 for name, shard_keys in parts.items()}
    counts = {name: len(shard_keys) for name, shard_keys in parts.items()}
    snapshot_url = _put_json(artifacts, f"{base}snapshot.json", {
        "snapshot_id": sid, "run_id": run_id, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "days": days, "bucket": processed, "label_counts": event.get("labels", {}), "shard_counts": counts,
        "splits": parts})
    names = job_names(os.environ["JOB_PREFIX"], run_id)
    run_output = f"s3://{artifacts}/{output}"
    logger.info("snapshot written", extra={"run_id": run_id, "snapshot_id": sid, "shards": counts})
    return {"snapshot_id": sid, "snapshot_url": snapshot_url, **manifests, "shards": counts, **names,
            "checkpoint_url": f"{run_output}checkpoints/{names['training_job_name']}/",
            "evaluation_prefix": f"{run_output}evaluations/{names['processing_job_name']}/",
            "evaluation_url": f"{run_output}evaluations/{names['processing_job_name']}/evaluation.json"}
