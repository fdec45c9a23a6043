"""The drift function against moto: captures of an unshifted and a shifted image set (brighter images,
another class mix) against the baseline of a generated training snapshot."""
from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest

from drift_world import (ARTIFACTS_BUCKET, LABELS, SNAPSHOT_ID, SNAPSHOT_PREFIX, drift_function, make_image, published,
                         put_captures, snapshot_world)
from ml_pipeline import metric_names as project_names

BAD_LINES = [
    "not json at all",
    json.dumps({"captureData": {"endpointInput": {"data": "%%%", "encoding": "BASE64",
                                                  "observedContentType": "application/json"}}}),
    json.dumps({"captureData": {"endpointInput": {"data": base64.b64encode(b"\xff\xd8 not a jpeg").decode(),
                                                  "encoding": "BASE64", "observedContentType": "image/jpeg"},
                                "endpointOutput": {"data": '{"predictions": [{"label": "cat"}]}', "encoding": "JSON",
                                                   "observedContentType": "application/json"}}}),
]


@pytest.fixture(scope="module")
def shared_run(image_sets):
    """GIVEN champion captures from the training population (plus 3 bad lines) and challenger captures
    from a shifted one, WHEN the function runs (once for the module), THEN its summary and the world."""
    with pytest.MonkeyPatch.context() as mp, drift_function(mp) as drift, snapshot_world(image_sets) as aws:
        now = dt.datetime.now(dt.timezone.utc)
        put_captures(aws["s3"], "champion", *image_sets["unshifted"], now, bad=BAD_LINES)
        put_captures(aws["s3"], "challenger", *image_sets["shifted"], now)
        yield drift.run(drift.Settings.from_environ(), now + dt.timedelta(seconds=5)), drift, aws


@pytest.fixture
def measured(shared_run):
    return shared_run[0]


def test_an_unshifted_sample_scores_low_and_a_shifted_one_high(measured):
    champion, challenger = measured["variants"]["champion"]["psi"], measured["variants"]["challenger"]["psi"]
    assert measured["snapshot_id"] == SNAPSHOT_ID
    assert max(champion.values()) < 0.2, champion
    assert challenger["brightness"] > 1.0, challenger
    assert challenger["prediction"] > 0.5, challenger
    assert champion["prediction"] < 0.1


def test_bad_capture_lines_are_counted_and_skipped(measured):
    champion = measured["variants"]["champion"]
    assert champion["bad_lines"] == 3
    assert champion["images"] == 300 and champion["lines"] == 60 + 3


def test_scores_are_published_per_variant_and_feature(shared_run):
    cw = shared_run[2]["cloudwatch"]
    assert published(cw, project_names.DRIFT_SCORE, "challenger")[0] > 1.0
    assert published(cw, project_names.DRIFT_SCORE, "champion")[0] < 0.2
    assert published(cw, project_names.INPUT_DRIFT_PSI, "challenger", "brightness")[0] > 1.0
    assert published(cw, project_names.DRIFT_BAD_CAPTURE_LINES, "champion") == [3.0]
    assert published(cw, project_names.DRIFT_SAMPLES, "challenger") == [300.0]


def test_the_baseline_is_cached_beside_the_snapshot_and_reused(shared_run):
    measured, drift, aws = shared_run
    key = f"{SNAPSHOT_PREFIX}{SNAPSHOT_ID}/drift-baseline.json"
    baseline = json.loads(aws["s3"].get_object(Bucket=ARTIFACTS_BUCKET, Key=key)["Body"].read())
    assert baseline["images"] == 250 and set(baseline["labels"]) == set(LABELS)
    # Remove the snapshot's document: a second run must not need it (the cache answers).
    aws["s3"].delete_object(Bucket=ARTIFACTS_BUCKET, Key=f"{SNAPSHOT_PREFIX}{SNAPSHOT_ID}/snapshot.json")
    again = drift.run(drift.Settings.from_environ(), dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))
    assert again["variants"]["challenger"]["psi"] == measured["variants"]["challenger"]["psi"]


def test_a_single_raw_image_request_is_read(drift):
    import capture
    image = make_image(__import__("random").Random(1))
    line = json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "application/x-image", "mode": "INPUT",
                          "data": base64.b64encode(image).decode(), "encoding": "BASE64"},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                           "data": json.dumps({"predictions": [{"label": "dog"}]}), "encoding": "JSON"}}})
    assert capture.parse_line(line) == capture.Captured([image], ["dog"])


def test_hour_folders_cover_the_period(drift):
    import capture
    start = dt.datetime(2026, 11, 29, 8, 30, tzinfo=dt.timezone.utc)
    folders = capture.hour_prefixes("dc/", "ep", "champion", start, start + dt.timedelta(minutes=60))
    assert folders == ["dc/ep/champion/2026/11/29/08/", "dc/ep/champion/2026/11/29/09/"]


def test_psi_is_zero_for_equal_distributions_and_grows_with_the_shift(drift):
    import stats
    assert stats.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert stats.psi([10, 20, 30], [30, 20, 10]) > stats.psi([10, 20, 30], [12, 20, 28]) > 0
    assert stats.label_psi({"a": 5, "b": 5}, {"a": 5, "b": 5}) == pytest.approx(0.0)
    assert stats.label_psi({"a": 5, "b": 5}, {"a": 5, "zebra": 5}) > 1


def test_the_function_publishes_the_projects_names(drift):
    import metric_names
    assert {getattr(metric_names, n) for n in dir(metric_names) if n.isupper() and n != "ALL"} == set(metric_names.ALL)
    assert set(metric_names.ALL) <= project_names.PUBLISHED
    assert metric_names.ALL == (project_names.INPUT_DRIFT_PSI, project_names.PREDICTION_DRIFT_PSI,
                                project_names.DRIFT_SCORE, project_names.DRIFT_SAMPLES,
                                project_names.DRIFT_BAD_CAPTURE_LINES)
    import stats
    assert stats.FEATURES == project_names.DRIFT_FEATURES


def test_the_component_sets_exactly_the_variables_the_function_requires(full_plan):
    from drift_world import FUNCTION_DIR
    required = re.findall(r'environ\["(\w+)"\]', (FUNCTION_DIR / "handler.py").read_text())
    function = full_plan.one("aws:lambda/function:Function", "observability-drift-fn").inputs
    assert sorted(function["environment"]["variables"]) == sorted(set(required)) and len(required) == len(set(required))
    assert function["layers"] and function["architectures"] == ["arm64"] and function["timeout"] == 900
