"""Fixtures for the image-ingest function tests: fake AWS (moto) with the buckets and catalog
table the function expects, and the function loaded afresh per test with its environment."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

# The builders module sits beside this file; put it on the path whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_builders import FUNCTION_ENV, PROCESSED_BUCKET, RAW_BUCKET, TABLE  # noqa: E402

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "functions" / "image_ingest"
# Lambda imports the function's modules as top-level names, so the tests do too: every module of the zip.
FUNCTION_MODULES = tuple(sorted(p.stem for p in FUNCTION_DIR.glob("*.py")))


@dataclass
class Aws:
    s3: Any
    ddb: Any


def _forget_function_modules() -> None:
    for name in FUNCTION_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FUNCTION_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws(function_env: None, moto: None) -> Iterator[Aws]:
    s3 = boto3.client("s3")
    for bucket in (RAW_BUCKET, PROCESSED_BUCKET):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("partition_date", "image_id", "rejected_pk", "rejected_at")
        ],
        KeySchema=[
            {"AttributeName": "partition_date", "KeyType": "HASH"},
            {"AttributeName": "image_id", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "rejected-index",
                "KeySchema": [
                    {"AttributeName": "rejected_pk", "KeyType": "HASH"},
                    {"AttributeName": "rejected_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    yield Aws(s3, ddb)


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch, function_env: None) -> Iterator[Callable[..., Any]]:
    """Import the handler module afresh with changed environment variables: load(MAX_PIXELS="10")."""
    monkeypatch.syspath_prepend(str(FUNCTION_DIR))

    def _load(**env: str) -> Any:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _forget_function_modules()
        return importlib.import_module("handler")

    yield _load
    _forget_function_modules()


@pytest.fixture
def ingest(aws: Aws, load: Callable[..., Any]) -> Any:
    return load()
