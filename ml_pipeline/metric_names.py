"""Custom metric names ml-pipeline publishes (contract 8 of the brief), in namespace MLPlatform/ml-pipeline-<stack>.

The ingest function's names live in its own package (functions/image_ingest/metric_names.py, the only
code its zip holds) and are listed here from there, so the function, its alarms and this list agree.
"""
from shared.lambda_function import function_module

_ingest = function_module("image_ingest", "metric_names")

INGEST_SOURCE_MISSING = _ingest.SOURCE_MISSING
INGEST_ACCESS_DENIED = _ingest.ACCESS_DENIED
INGEST_PERMANENT_ERRORS = _ingest.PERMANENT_ERRORS
INGEST_STATISTICS_NOT_RECORDED = _ingest.STATISTICS_NOT_RECORDED


def namespace(name_prefix: str) -> str:
    """``MLPlatform/<prefix>`` with prefix ``ml-pipeline-<stack>``."""
    return f"MLPlatform/{name_prefix}"
