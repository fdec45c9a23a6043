"""The drift function's test world: its folder loaded as Lambda loads it, moto with the buckets and
model-versions table it reads, generated images, shards and capture lines."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import importlib
import io
import json
import random
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from moto import mock_aws
from PIL import Image
from ml_pipeline.training.component import MODEL_VERSIONS  # contract 4's schema, as deployed

REPO = Path(__file__).resolve().parents[3]
FUNCTION_DIR = REPO / "functions" / "drift_monitor"
FUNCTION_MODULES = ("handler", "capture", "snapshot", "stats", "metric_names")

LOGS_BUCKET = "mlp-test-logs"
ARTIFACTS_BUCKET = "mlp-test-artifacts"
PROCESSED_BUCKET = "mlp-test-processed"
VERSIONS_TABLE = "ml-pipeline-test-model-versions"
ENDPOINT = "ml-pipeline-test-endpoint"
CAPTURE_PREFIX = "data-capture/"
SNAPSHOT_PREFIX = "snapshots/"
SNAPSHOT_ID = "snap-20261128-abc123"
MODEL = "image-classifier"
NAMESPACE = "MLPlatform/ml-pipeline-test"
LABELS = ("cat", "dog", "bird")
TRAIN_MIX = (0.5, 0.3, 0.2)
SHIFTED_MIX = (0.1, 0.2, 0.7)

ENV = {
    "CAPTURE_BUCKET": LOGS_BUCKET, "CAPTURE_PREFIX": CAPTURE_PREFIX, "ENDPOINT_NAME": ENDPOINT,
    "VARIANTS": "champion,challenger", "PERIOD_MINUTES": "60", "MIN_SAMPLES": "20", "MAX_RECORDS": "5000",
    "MODEL_VERSIONS_TABLE": VERSIONS_TABLE, "MODEL_NAME": MODEL, "SNAPSHOT_BUCKET": ARTIFACTS_BUCKET,
    "SNAPSHOT_PREFIX": SNAPSHOT_PREFIX, "BASELINE_IMAGES": "250", "TARGET_SIZE": "64",
    "METRIC_NAMESPACE": NAMESPACE,
}


def make_image(rng: random.Random, brightness_shift: int = 0) -> bytes:
    """A small JPEG whose size, aspect, brightness and tint vary like a photo collection's."""
    width, height = rng.choice([(48, 32), (40, 40), (32, 48), (56, 42)])
    base = rng.randint(50, 170) + brightness_shift
    tint = [rng.randint(-25, 25) for _ in range(3)]
    colour = tuple(max(0, min(255, base + t)) for t in tint)
    img = Image.new("RGB", (width, height), colour)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def labels_for(rng: random.Random, n: int, mix: tuple[float, ...]) -> list[str]:
    return rng.choices(LABELS, weights=mix, k=n)


def shard(images: list[bytes], labels: list[str], start: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, (data, label) in enumerate(zip(images, labels), start):
            for name, body in ((f"img{i:05d}.jpg", data), (f"img{i:05d}.json", json.dumps({"label": label}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def capture_line(images: list[bytes], labels: list[str], *, json_encoding: bool = False) -> str:
    request = json.dumps({"instances": [base64.b64encode(i).decode() for i in images]})
    response = json.dumps({"predictions": [{"label": l, "probability": 0.9, "top": [[l, 0.9]]} for l in labels]})
    def part(text: str) -> dict:
        if json_encoding:
            return {"observedContentType": "application/json", "mode": "INPUT", "data": text, "encoding": "JSON"}
        return {"observedContentType": "application/json", "mode": "INPUT",
                "data": base64.b64encode(text.encode()).decode(), "encoding": "BASE64"}
    out = part(response)
    out["mode"] = "OUTPUT"
    return json.dumps({"captureData": {"endpointInput": part(request), "endpointOutput": out},
                       "eventMetadata": {"eventId": "e", "inferenceTime": "2026-11-29T09:10:00Z"}, "eventVersion": "0"})


@contextlib.contextmanager
def drift_function(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The function's handler module with its environment, imported afresh from its folder (as Lambda does)."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(FUNCTION_DIR))
    for name in FUNCTION_MODULES:
        sys.modules.pop(name, None)
    try:
        yield importlib.import_module("handler")
    finally:
        for name in FUNCTION_MODULES:
            sys.modules.pop(name, None)


@contextlib.contextmanager
def snapshot_world(image_sets) -> Iterator[dict[str, Any]]:
    """moto with the snapshot (two train shards and its document), and the model-versions table with a
    production version pointing at it."""
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (LOGS_BUCKET, ARTIFACTS_BUCKET, PROCESSED_BUCKET):
            s3.create_bucket(Bucket=bucket)
        images, labels = image_sets["train"]
        keys = []
        for i, lo in enumerate((0, 150)):
            key = f"shards/2026/11/2{i}/shard{i}.tar"
            s3.put_object(Bucket=PROCESSED_BUCKET, Key=key, Body=shard(images[lo:lo + 150], labels[lo:lo + 150], lo))
            keys.append(key)
        counts = {label: labels.count(label) for label in LABELS}
        doc = {"snapshot_id": SNAPSHOT_ID, "bucket": PROCESSED_BUCKET, "label_counts": counts,
               "splits": {"train": keys, "validation": [], "test": []}}
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{SNAPSHOT_PREFIX}{SNAPSHOT_ID}/snapshot.json",
                      Body=json.dumps(doc).encode())
        ddb = boto3.client("dynamodb")
        ddb.create_table(**MODEL_VERSIONS.create_table_request(VERSIONS_TABLE))
        for version, status, sid in ((1, "retired", "snap-old"), (2, "production", SNAPSHOT_ID), (3, "candidate", "x")):
            ddb.put_item(TableName=VERSIONS_TABLE, Item={
                "model_name": {"S": MODEL}, "version": {"N": str(version)}, "status": {"S": status},
                "snapshot_id": {"S": sid}})
        yield {"s3": s3, "ddb": ddb, "cloudwatch": boto3.client("cloudwatch")}


def put_captures(s3, variant: str, images, labels, now: dt.datetime, *, bad: list[str] = (), batch: int = 5) -> None:
    lines = [capture_line(images[i:i + batch], labels[i:i + batch], json_encoding=(i // batch) % 2 == 1)
             for i in range(0, len(images), batch)]
    lines[3:3] = list(bad)
    key = f"{CAPTURE_PREFIX}{ENDPOINT}/{variant}/{now:%Y/%m/%d/%H}/capture-{variant}.jsonl"
    s3.put_object(Bucket=LOGS_BUCKET, Key=key, Body="\n".join(lines).encode())


def published(cloudwatch, metric: str, variant: str, feature: str | None = None) -> list[float]:
    dims = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
    if feature:
        dims.append({"Name": "Feature", "Value": feature})
    now = dt.datetime.now(dt.timezone.utc)
    result = cloudwatch.get_metric_statistics(Namespace=NAMESPACE, MetricName=metric, Dimensions=dims,
                                              StartTime=now - dt.timedelta(hours=2), EndTime=now + dt.timedelta(hours=1),
                                              Period=60, Statistics=["Maximum"])
    return [p["Maximum"] for p in result["Datapoints"]]
