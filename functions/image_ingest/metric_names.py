"""Custom metrics the ingest function publishes (namespace from METRIC_NAMESPACE, one dimension-less
datum each, sent only when non-zero). ml_pipeline/metric_names.py lists them for the project and the
ingestion alarms use them."""

# A source deleted before it was read: recorded as rejected (`source_missing`), warned, not alarmed.
SOURCE_MISSING = "IngestSourceMissing"
# S3 or KMS refused the function: the record is retried and this alarms (a policy or key is wrong).
ACCESS_DENIED = "IngestAccessDenied"
# An error no retry can fix (a key or item AWS refuses): final on the first try, alarmed.
PERMANENT_ERRORS = "IngestPermanentErrors"
# The daily statistics item could not be updated after botocore's retries: counts are short, alarmed.
STATISTICS_NOT_RECORDED = "IngestStatisticsNotRecorded"

ALL = (SOURCE_MISSING, ACCESS_DENIED, PERMANENT_ERRORS, STATISTICS_NOT_RECORDED)
