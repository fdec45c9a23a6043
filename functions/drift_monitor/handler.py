"""Drift of the served images and predictions against the production model's training snapshot.

Runs on a schedule. For each variant of the endpoint it reads the data capture of the last period,
computes image statistics (size, aspect, brightness, colour) and the predicted-class distribution,
and publishes their population stability indexes against the snapshot's baseline (computed once
from a sample of the snapshot's train shards, cached beside the snapshot). A capture line that
cannot be read is counted and skipped; a variant with too few samples publishes its count only.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import boto3
from botocore.config import Config

import capture
import metric_names
import snapshot
import stats

log = logging.getLogger()  # level and JSON format come from the function's logging config
_clients: dict[str, Any] = {}


@dataclass(frozen=True)
class Settings:
    capture_bucket: str
    capture_prefix: str
    endpoint_name: str
    variants: tuple[str, ...]
    period_minutes: int
    min_samples: int
    max_records: int
    model_versions_table: str
    model_name: str
    snapshot_bucket: str
    snapshot_prefix: str
    baseline_images: int
    target_size: int
    metric_namespace: str

    @staticmethod
    def from_environ(environ: Any = os.environ) -> "Settings":
        return Settings(
            capture_bucket=environ["CAPTURE_BUCKET"], capture_prefix=environ["CAPTURE_PREFIX"],
            endpoint_name=environ["ENDPOINT_NAME"],
            variants=tuple(v for v in environ["VARIANTS"].split(",") if v),
            period_minutes=int(environ["PERIOD_MINUTES"]), min_samples=int(environ["MIN_SAMPLES"]),
            max_records=int(environ["MAX_RECORDS"]), model_versions_table=environ["MODEL_VERSIONS_TABLE"],
            model_name=environ["MODEL_NAME"], snapshot_bucket=environ["SNAPSHOT_BUCKET"],
            snapshot_prefix=environ["SNAPSHOT_PREFIX"], baseline_images=int(environ["BASELINE_IMAGES"]),
            target_size=int(environ["TARGET_SIZE"]), metric_namespace=environ["METRIC_NAMESPACE"])


def _client(name: str) -> Any:
    if name not in _clients:
        _clients[name] = boto3.client(name, config=Config(retries={"mode": "standard", "max_attempts": 5}))
    return _clients[name]


@dataclass
class VariantSample:
    variant: str
    histograms: stats.Histograms = field(default_factory=stats.Histograms)
    labels: Counter = field(default_factory=Counter)
    lines: int = 0
    bad_lines: int = 0


def read_variant(s3: Any, s: Settings, variant: str, start: dt.datetime, end: dt.datetime) -> VariantSample:
    """Every capture line of [start, end) for one variant, at most ``max_records`` of them."""
    sample = VariantSample(variant)
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in capture.hour_prefixes(s.capture_prefix, s.endpoint_name, variant, start, end):
        for page in paginator.paginate(Bucket=s.capture_bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not start <= obj["LastModified"] < end + dt.timedelta(minutes=5):
                    continue  # written before the period (the first hour's folder holds older files)
                body = s3.get_object(Bucket=s.capture_bucket, Key=obj["Key"])["Body"].read()
                for line in body.splitlines():
                    if not line.strip():
                        continue
                    if sample.lines >= s.max_records:
                        return sample
                    sample.lines += 1
                    _add_line(sample, line, s.target_size, obj["Key"])
    return sample


def _add_line(sample: VariantSample, line: bytes, target_size: int, key: str) -> None:
    try:
        captured = capture.parse_line(line)
        features = [stats.image_features(image, target_size) for image in captured.images]
    except Exception as exc:  # noqa: BLE001 - a bad line is counted and skipped, never fatal
        sample.bad_lines += 1
        log.warning("capture line skipped", extra={"key": key, "variant": sample.variant, "error": str(exc)[:300]})
        return
    for f in features:
        sample.histograms.add(f)
    sample.labels.update(captured.labels)


def scores(sample: VariantSample, baseline: dict) -> dict[str, float]:
    """PSI per input feature and of the predictions."""
    result = {name: stats.psi(baseline["features"][name]["counts"], sample.histograms.counts[name])
              for name in stats.FEATURES}
    result["prediction"] = stats.label_psi(baseline["labels"], sample.labels)
    return result


def metric_data(s: Settings, sample: VariantSample, psis: Optional[dict[str, float]], now: dt.datetime) -> list[dict]:
    dims = [{"Name": "EndpointName", "Value": s.endpoint_name}, {"Name": "VariantName", "Value": sample.variant}]
    data = [
        {"MetricName": metric_names.DRIFT_SAMPLES, "Dimensions": dims, "Value": float(sample.histograms.images),
         "Unit": "Count", "Timestamp": now},
        {"MetricName": metric_names.DRIFT_BAD_CAPTURE_LINES, "Dimensions": dims, "Value": float(sample.bad_lines),
         "Unit": "Count", "Timestamp": now},
    ]
    if psis is None:
        return data
    for feature in stats.FEATURES:
        data.append({"MetricName": metric_names.INPUT_DRIFT_PSI, "Dimensions": dims + [{"Name": "Feature", "Value": feature}],
                     "Value": psis[feature], "Unit": "None", "Timestamp": now})
    data.append({"MetricName": metric_names.PREDICTION_DRIFT_PSI, "Dimensions": dims, "Value": psis["prediction"],
                 "Unit": "None", "Timestamp": now})
    data.append({"MetricName": metric_names.DRIFT_SCORE, "Dimensions": dims, "Value": max(psis.values()),
                 "Unit": "None", "Timestamp": now})
    return data


def run(s: Settings, now: dt.datetime) -> dict[str, Any]:
    s3, ddb, cloudwatch = _client("s3"), _client("dynamodb"), _client("cloudwatch")
    snapshot_id = snapshot.production_snapshot_id(ddb, s.model_versions_table, s.model_name)
    if snapshot_id is None:
        log.warning("no production model version: nothing to compare against", extra={"model_name": s.model_name})
        return {"snapshot_id": None, "variants": {}}
    baseline = snapshot.load_baseline(s3, s.snapshot_bucket, s.snapshot_prefix, snapshot_id, s.baseline_images,
                                      s.target_size)
    start = now - dt.timedelta(minutes=s.period_minutes)
    summary: dict[str, Any] = {}
    for variant in s.variants:
        sample = read_variant(s3, s, variant, start, now)
        enough = sample.histograms.images >= s.min_samples
        psis = scores(sample, baseline) if enough else None
        cloudwatch.put_metric_data(Namespace=s.metric_namespace, MetricData=metric_data(s, sample, psis, now))
        summary[variant] = {"images": sample.histograms.images, "lines": sample.lines, "bad_lines": sample.bad_lines,
                            "psi": psis}
        log.info("drift measured", extra={"variant": variant, "snapshot_id": snapshot_id, **summary[variant]})
    return {"snapshot_id": snapshot_id, "variants": summary}


def handler(event: dict, context: Any) -> dict:
    return run(Settings.from_environ(), dt.datetime.now(dt.timezone.utc))
