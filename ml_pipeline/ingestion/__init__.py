"""Image ingestion: S3 -> EventBridge -> SQS -> the image_ingest function (settings, component, alarms)."""
