"""The image_ingest function's environment variables, named once.

The ImageIngestion component imports this module (``functions.image_ingest.environment``) to build the
function's environment, and the handler reads every name with ``os.environ[...]``: a variable the
component sets is one the function requires, and a missing one fails the cold start, naming it.
This module imports nothing, so the component can load it without the function's libraries.
"""

PROCESSED_BUCKET = "PROCESSED_BUCKET"
CATALOG_TABLE = "CATALOG_TABLE"
RAW_PREFIX = "RAW_PREFIX"
QUARANTINE_PREFIX = "QUARANTINE_PREFIX"
SHARD_PREFIX = "SHARD_PREFIX"
LABEL_PATH_SEGMENT = "LABEL_PATH_SEGMENT"
TRAINING_IMAGE_SIZE = "TRAINING_IMAGE_SIZE"
JPEG_QUALITY = "JPEG_QUALITY"
MAX_INPUT_BYTES = "MAX_INPUT_BYTES"
MAX_PIXELS = "MAX_PIXELS"
MAX_PIXELS_PER_BYTE = "MAX_PIXELS_PER_BYTE"
MIN_DIMENSION = "MIN_DIMENSION"
ALLOWED_FORMATS = "ALLOWED_FORMATS"
WORKERS = "WORKERS"
METRIC_NAMESPACE = "METRIC_NAMESPACE"

# Every variable the component sets, and so every one the function requires.
ALL = (
    PROCESSED_BUCKET, CATALOG_TABLE, RAW_PREFIX, QUARANTINE_PREFIX, SHARD_PREFIX, LABEL_PATH_SEGMENT,
    TRAINING_IMAGE_SIZE, JPEG_QUALITY, MAX_INPUT_BYTES, MAX_PIXELS, MAX_PIXELS_PER_BYTE, MIN_DIMENSION,
    ALLOWED_FORMATS, WORKERS, METRIC_NAMESPACE,
)

# Set by Lambda itself from the function's memory size (not by the component): it sizes the decode budget.
LAMBDA_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
