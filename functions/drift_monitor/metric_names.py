"""The metrics this function publishes (namespace from METRIC_NAMESPACE). The project's list,
ml_pipeline/metric_names.py, holds the same names; a test checks that the two agree (this zip holds
only this folder, so the function cannot import the project's module)."""

INPUT_DRIFT_PSI = "InputDriftPsi"  # EndpointName, VariantName, Feature
PREDICTION_DRIFT_PSI = "PredictionDriftPsi"  # EndpointName, VariantName
DRIFT_SCORE = "DriftScore"  # EndpointName, VariantName: the largest PSI of the variant
DRIFT_SAMPLES = "DriftSampleCount"  # EndpointName, VariantName
DRIFT_BAD_CAPTURE_LINES = "DriftBadCaptureLines"  # EndpointName, VariantName

ALL = (INPUT_DRIFT_PSI, PREDICTION_DRIFT_PSI, DRIFT_SCORE, DRIFT_SAMPLES, DRIFT_BAD_CAPTURE_LINES)
