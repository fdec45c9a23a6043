"""The rule's real event pattern, evaluated by moto's EventBridge: which S3 events reach the queue."""
import json

import boto3
import pytest
from moto import mock_aws


def _s3_event(bucket: str, key: str, detail_type: str = "Object Created") -> dict:
    # The shape S3 sends to EventBridge (detail-type "Object Created", source aws.s3).
    return {
        "Source": "aws.s3", "DetailType": detail_type,
        "Detail": json.dumps({"version": "0", "bucket": {"name": bucket},
                              "object": {"key": key, "size": 1024, "etag": "abc", "version-id": "v1", "sequencer": "01"},
                              "request-id": "r", "requester": "123456789012", "reason": "PutObject"}),
    }


@pytest.fixture
def routed(pipeline_plan):
    """Send events through a moto rule with the plan's pattern and return the keys that reached the queue."""
    pattern = pipeline_plan.one("aws:cloudwatch/eventRule:EventRule", "ingest-rule").inputs["eventPattern"]

    def send(*events: dict) -> list[str]:
        with mock_aws():
            sqs = boto3.client("sqs", region_name="us-east-1")
            events_client = boto3.client("events", region_name="us-east-1")
            url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            events_client.put_rule(Name="raw-image-created", EventPattern=pattern)
            events_client.put_targets(Rule="raw-image-created", Targets=[{"Id": "q", "Arn": arn}])
            result = events_client.put_events(Entries=list(events))
            assert result["FailedEntryCount"] == 0
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            return sorted(json.loads(m["Body"])["detail"]["object"]["key"] for m in messages)
    return send


def test_an_image_under_the_prefix_of_the_raw_bucket_reaches_the_queue(pipeline_plan, routed):
    raw = pipeline_plan.outputs["raw_bucket_name"]
    assert routed(_s3_event(raw, "incoming/2026/11/29/cat.jpg")) == ["incoming/2026/11/29/cat.jpg"]


def test_other_prefixes_buckets_and_event_types_do_not(pipeline_plan, routed):
    raw = pipeline_plan.outputs["raw_bucket_name"]
    assert routed(
        _s3_event(raw, "quarantine/incoming/cat.jpg"),   # the function's own quarantine copies
        _s3_event("someone-elses-bucket", "incoming/cat.jpg"),
        _s3_event(raw, "incoming/cat.jpg", detail_type="Object Deleted"),
    ) == []
