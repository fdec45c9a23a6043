"""Custom metric names ml-pipeline publishes (contract 8), in namespace ``MLPlatform/ml-pipeline-<stack>``.

One module of names and dimensions for the whole project: the code that publishes a metric and the
dashboards and alarms that read it import the name from here, and a test checks that every metric a
widget or alarm names is either an AWS documented metric or listed here (``PUBLISHED``).
Pure Python (no pulumi import), so functions' tests and the programs share it. The ingest function's
names live in its own folder (the only code its zip holds) and are loaded from there, so they have one home.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def namespace(name_prefix: str) -> str:
    """``MLPlatform/<prefix>`` with prefix ``ml-pipeline-<stack>``."""
    return f"MLPlatform/{name_prefix}"


# -- drift (functions/drift_monitor publishes them; the function keeps its own copy of the names, since
#    its zip holds only its folder, and a test checks the two agree) --------------------------------
# Population stability index of one input statistic of one variant's captured requests against the
# training snapshot's baseline. Dimensions: EndpointName, VariantName, Feature (one of DRIFT_FEATURES).
INPUT_DRIFT_PSI = "InputDriftPsi"
# PSI of the predicted-class distribution against the snapshot's label distribution.
# Dimensions: EndpointName, VariantName.
PREDICTION_DRIFT_PSI = "PredictionDriftPsi"
# The largest of the above for one variant (what the drift alarm watches). Dimensions: EndpointName, VariantName.
DRIFT_SCORE = "DriftScore"
# Captured requests that went into the scores, and capture lines that could not be read (skipped).
DRIFT_SAMPLES = "DriftSampleCount"
DRIFT_BAD_CAPTURE_LINES = "DriftBadCaptureLines"
DRIFT_FEATURES = ("size", "aspect", "brightness", "red", "green", "blue")
DRIFT_DIMENSIONS = ("EndpointName", "VariantName")

# -- training workflow (the training helper publishes them; names fixed here so the dashboards can
#    read them). Dimension: ModelName. -----------------------------------------------------------
# Accuracy of a candidate on the test split, from the evaluation report (contract 7).
MODEL_ACCURACY = "ModelAccuracy"
# Billable vs total seconds of the training job (SageMaker's BillableTimeInSeconds/TrainingTimeInSeconds):
# the Spot saving in percent, and the training time.
TRAINING_DURATION_SECONDS = "TrainingDurationSeconds"
SPOT_SAVINGS_PERCENT = "SpotSavingsPercent"
TRAINING_DIMENSIONS = ("ModelName",)

# -- ingestion (functions/image_ingest/metric_names.py, dimension-less) ---------------------------------
def _ingest_names():
    path = Path(__file__).resolve().parents[1] / "functions" / "image_ingest" / "metric_names.py"
    spec = importlib.util.spec_from_file_location("_image_ingest_metric_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ingest = _ingest_names()
INGEST_SOURCE_MISSING = _ingest.SOURCE_MISSING
INGEST_ACCESS_DENIED = _ingest.ACCESS_DENIED
INGEST_PERMANENT_ERRORS = _ingest.PERMANENT_ERRORS
INGEST_STATISTICS_NOT_RECORDED = _ingest.STATISTICS_NOT_RECORDED

# Every published name with its dimension names (a datum with other dimensions is another series).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    INPUT_DRIFT_PSI: (*DRIFT_DIMENSIONS, "Feature"),
    PREDICTION_DRIFT_PSI: DRIFT_DIMENSIONS,
    DRIFT_SCORE: DRIFT_DIMENSIONS,
    DRIFT_SAMPLES: DRIFT_DIMENSIONS,
    DRIFT_BAD_CAPTURE_LINES: DRIFT_DIMENSIONS,
    MODEL_ACCURACY: TRAINING_DIMENSIONS,
    TRAINING_DURATION_SECONDS: TRAINING_DIMENSIONS,
    SPOT_SAVINGS_PERCENT: TRAINING_DIMENSIONS,
    INGEST_SOURCE_MISSING: (),
    INGEST_ACCESS_DENIED: (),
    INGEST_PERMANENT_ERRORS: (),
    INGEST_STATISTICS_NOT_RECORDED: (),
}
PUBLISHED = frozenset(DIMENSIONS)
