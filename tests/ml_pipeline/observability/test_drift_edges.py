"""The drift function's edge cases, each in a fresh moto (the main scenario's module-scoped one would
leak into them)."""
from __future__ import annotations

import datetime as dt

from drift_world import VERSIONS_TABLE, published, put_captures
from ml_pipeline import metric_names as project_names


def test_too_few_samples_publish_counts_but_no_scores(drift, aws, image_sets, monkeypatch):
    monkeypatch.setenv("MIN_SAMPLES", "1000")
    now = dt.datetime.now(dt.timezone.utc)
    put_captures(aws["s3"], "champion", *image_sets["shifted"], now)
    result = drift.run(drift.Settings.from_environ(), now + dt.timedelta(seconds=5))
    assert result["variants"]["champion"]["psi"] is None
    assert published(aws["cloudwatch"], project_names.DRIFT_SCORE, "champion") == []
    assert published(aws["cloudwatch"], project_names.DRIFT_SAMPLES, "champion") == [300.0]


def test_no_production_version_measures_nothing(drift, aws):
    aws["ddb"].delete_item(TableName=VERSIONS_TABLE, Key={"model_name": {"S": "image-classifier"}, "version": {"N": "2"}})
    assert drift.handler({}, None) == {"snapshot_id": None, "variants": {}}
