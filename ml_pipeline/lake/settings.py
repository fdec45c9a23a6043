"""The data lake's settings: bucket names and lifecycle, read from the stack config once."""
from __future__ import annotations

from dataclasses import dataclass

from shared.config_reader import ConfigReader


@dataclass(frozen=True)
class LakeSettings:
    # Bucket name templates: {account} and {region} are filled in at deploy (AwsContext.bucket_name).
    raw_bucket_name: str
    processed_bucket_name: str
    artifacts_bucket_name: str
    logs_bucket_name: str
    raw_infrequent_access_days: int
    raw_glacier_days: int
    raw_retention_days: int
    access_log_retention_days: int
    noncurrent_version_days: int
    capture_retention_days: int


def load(reader: ConfigReader, name_prefix: str) -> LakeSettings:
    """Bucket names are templates with optional {account} and {region}; the defaults append both."""
    def bucket(key: str, role: str) -> str:
        default = f"{name_prefix}-{role}-{{account}}-{{region}}"
        return reader.bucket_name(key, default_template=default) or default

    raw_ia = reader.integer("rawInfrequentAccessDays", 30, minimum=30, maximum=3650)
    raw_glacier = reader.integer("rawGlacierDays", 90, minimum=31, maximum=3650)
    raw_retention = reader.integer("rawRetentionDays", 365, minimum=1, maximum=36500)
    reader.require(raw_ia < raw_glacier < raw_retention,
                   ["rawInfrequentAccessDays", "rawGlacierDays", "rawRetentionDays"],
                   "rawInfrequentAccessDays < rawGlacierDays < rawRetentionDays must hold",
                   f"{raw_ia}, {raw_glacier}, {raw_retention}")
    # S3 rejects a lifecycle rule that moves objects on from Standard-IA less than 30 days after moving them
    # there (Standard-IA's minimum storage duration).
    reader.require(raw_glacier >= raw_ia + 30, ["rawGlacierDays", "rawInfrequentAccessDays"],
                   "rawGlacierDays must be at least rawInfrequentAccessDays + 30 (S3 keeps objects 30 days in "
                   "Standard-IA before the next transition)", f"{raw_glacier} and {raw_ia}")
    return LakeSettings(
        raw_bucket_name=bucket("rawBucketName", "raw"),
        processed_bucket_name=bucket("processedBucketName", "processed"),
        artifacts_bucket_name=bucket("artifactsBucketName", "artifacts"),
        logs_bucket_name=bucket("logsBucketName", "logs"),
        raw_infrequent_access_days=raw_ia,
        raw_glacier_days=raw_glacier,
        raw_retention_days=raw_retention,
        access_log_retention_days=reader.integer("accessLogRetentionDays", 365, minimum=1, maximum=3650),
        noncurrent_version_days=reader.integer("noncurrentVersionDays", 30, minimum=1, maximum=3650),
        # The endpoint's captured requests and responses (images and predictions), read by drift detection.
        capture_retention_days=reader.integer("captureRetentionDays", 90, minimum=1, maximum=3650),
    )
