"""offline/cost.py: figures checked by hand for a small plan, the real stacks priced, the price file dated."""
from __future__ import annotations

import json
import re

import pytest

from offline import cost
from offline.mocks import RecordedResource
from offline.runner import Plan

SPOT, HOURS = 0.4231, 730.0


def _r(type_, logical, **inputs):
    return RecordedResource(type=type_, name=logical, inputs=inputs, custom=True, urn=f"urn::{logical}",
                            id=f"{logical}-id", state={"id": f"{logical}-id"})


def _small_plan() -> Plan:
    """2 x g5.xlarge Spot, one NAT, one interface endpoint in 3 AZs, an endpoint of 2 x ml.m5.large, an
    on-demand stream, and an ingest function taking 10,000 1 MB images a day (batches of 10, 1 GB arm64)."""
    resources = [
        _r("aws:ec2/launchTemplate:LaunchTemplate", "lt", blockDeviceMappings=[{"ebs": {"volumeSize": 100.0}}]),
        _r("aws:ec2/fleet:Fleet", "fleet",
           targetCapacitySpecification={"totalTargetCapacity": 2.0, "spotTargetCapacity": 2.0, "onDemandTargetCapacity": 0.0},
           launchTemplateConfigs=[{"launchTemplateSpecification": {"launchTemplateId": "lt-id"},
                                   "overrides": [{"instanceType": "g5.xlarge"}, {"instanceType": "g6.xlarge"}]}]),
        _r("aws:ec2/natGateway:NatGateway", "nat"),
        _r("aws:ec2/eip:Eip", "eip"),
        _r("aws:ec2/vpcEndpoint:VpcEndpoint", "ssm", vpcEndpointType="Interface", subnetIds=["a", "b", "c"]),
        _r("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", vpcEndpointType="Gateway"),
        _r("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "serving",
           productionVariants=[{"variantName": "blue", "instanceType": "ml.m5.large", "initialInstanceCount": 2.0}]),
        _r("aws:kinesis/stream:Stream", "events", streamModeDetails={"streamMode": "ON_DEMAND"}),
        _r("aws:lambda/function:Function", "ingest-fn", name="x-image-ingest", memorySize=1024.0, architectures=["arm64"],
           environment={"variables": {"SHARD_PREFIX": "shards/"}}),
        _r("aws:lambda/eventSourceMapping:EventSourceMapping", "mapping", batchSize=10.0,
           functionName="arn:aws:lambda:us-east-1:123456789012:function:x-image-ingest",
           eventSourceArn="arn:aws:sqs:us-east-1:123456789012:x-ingest"),
        _r("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "raw-lifecycle", rules=[
            {"status": "Enabled", "filter": {"prefix": "incoming/"}, "expiration": {"days": 60.0},
             "transitions": [{"days": 30.0, "storageClass": "STANDARD_IA"}]}]),
        _r("aws:dynamodb/table:Table", "catalog", name="x-image-catalog", pointInTimeRecovery={"enabled": True}),
        _r("aws:cloudwatch/logGroup:LogGroup", "logs", retentionInDays=7.0),
        _r("aws:kms/key:Key", "key"),
        _r("aws:cloudwatch/metricAlarm:MetricAlarm", "a1"),
        _r("aws:cloudwatch/metricAlarm:MetricAlarm", "a2"),
    ]
    return Plan("small", "test", resources, {}, {"raw_upload_prefix": "incoming/"}, [],
                config={"aws:region": "us-east-1"})


SMALL = cost.Workload(images_tb_per_day=0.01, mean_image_mb=1.0, nat_gb_per_instance_day=3.0)

# Worked by hand (730 h, 30.41667 days a month; 10,000 images a day = 304,166.67 a month).
HAND = {
    "GPU fleet fleet: 2 x g5.xlarge Spot": 617.73,            # 2 x 730 x 0.4231
    "GPU fleet fleet: gp3 volumes": 16.00,                     # 2 x 100 GB x 0.08
    "NAT gateways": 32.85,                                     # 730 x 0.045
    "NAT gateways: Elastic IPs": 3.65,                         # 730 x 0.005
    "NAT gateways: data processed": 8.21,                      # 2 x 3 GB x 30.41667 x 0.045
    "Interface endpoints": 21.90,                              # 3 AZs x 730 x 0.01
    "Interface endpoints: data processed": 0.30,               # 30.41667 GB x 0.01
    "SageMaker endpoint serving/blue: 2 x ml.m5.large": 167.90,  # 2 x 730 x 0.115
    "Kinesis stream events (on-demand)": 29.20,                # 730 x 0.04
    "Kinesis stream events: ingested": 2.43,                   # 30.41667 GB x 0.08
    "Kinesis stream events: retrieved": 1.22,                  # 30.41667 GB x 0.04
    "S3: image uploads (PUT)": 1.52,                           # 304.17 thousand x 0.005
    "EventBridge: S3 Object Created events": 0.0,              # AWS service events are free
    "SQS: send, receive and delete": 0.15,                     # 304,166.67 x 1.2 / 1e6 x 0.40
    "Lambda ingest: invocations": 0.01,                        # 30,416.67 / 1e6 x 0.20
    "Lambda ingest: duration (arm64, 1024 MB)": 1.01,          # 304,166.67 x 0.25 s x 1 GB x 0.0000133334
    "S3: raw image reads (GET)": 0.12,                         # 304.17 thousand x 0.0004
    "S3: shard writes (PUT)": 0.15,                            # 30.42 thousand x 0.005
    "S3 raw images: STANDARD storage": 6.90,                   # 10 GB x 30 days x 0.023
    "S3 raw images: STANDARD_IA storage": 3.75,                # 10 GB x 30 days x 0.0125
    "S3 raw images: transitions to STANDARD_IA": 3.04,         # 304.17 thousand x 0.01
    "S3 shards: STANDARD storage": 4.20,                       # 0.5 GB x 365 days x 0.023 (no rule: kept a year)
    "DynamoDB catalog: writes": 0.21,                          # (304,166.67 + 30,416.67) / 1e6 x 0.625
    "DynamoDB catalog: reads": 0.02,                           # 152,083 / 1e6 x 0.125
    "DynamoDB catalog: storage": 0.91,                         # 3.65 GB x 0.25
    "DynamoDB catalog: point-in-time recovery": 0.73,          # 3.65 GB x 0.20
    "CloudWatch Logs: ingested": 3.13,                         # (2 x 0.1 + 0.006) GB x 30.41667 x 0.5
    "CloudWatch Logs: stored": 0.04,                           # 1.442 GB x 0.03
    "KMS customer managed keys": 1.00,
    "CloudWatch alarms": 0.20,
}


@pytest.fixture(scope="module")
def small():
    return cost.estimate(_small_plan(), SMALL)


def test_each_row_of_a_small_plan_matches_the_hand_figure(small):
    rows = {r.item: r.monthly_usd for r in small.rows if r.in_total}
    assert rows == HAND
    assert small.total == pytest.approx(sum(HAND.values()), abs=0.01)


def test_the_on_demand_comparison_is_shown_but_not_counted(small):
    [row] = [r for r in small.rows if not r.in_total]
    assert row.item == "GPU fleet fleet without Spot (comparison)"
    assert row.monthly_usd == 1468.76                          # 2 x 730 x 1.006
    assert "g6.xlarge" in next(r.note for r in small.rows if r.item.endswith("g5.xlarge Spot"))


def test_json_and_table_carry_the_same_rows_and_total(small):
    doc = json.loads(json.dumps(small.to_json()))
    assert doc["total_monthly_usd"] == small.total
    assert [r["item"] for r in doc["rows"]] == [r.item for r in small.rows]
    assert doc["workload"]["images_tb_per_day"] == 0.01 and doc["prices_dated"]["oldest"]
    table = cost.render_table(small)
    [total_line] = [line for line in table.splitlines() if line.split()[:1] == ["total"]]
    assert total_line.split()[-1] == f"{small.total:,.2f}"
    assert "(1,468.76)" in table
    assert doc["unverified_prices"] == small.unverified_prices


def test_the_estimate_names_the_unverified_prices_it_used(small):
    # The on-demand g5.xlarge price was checked against a price list (2026-01-21); Spot samples were not.
    assert "ec2.spot.g5.xlarge" in small.unverified_prices
    assert "ec2.ondemand.g5.xlarge" not in small.unverified_prices
    assert "ec2.spot.g5.xlarge" in cost.render_table(small).splitlines()[-1]


def test_missing_prices_are_reported_not_guessed():
    plan = _small_plan()
    plan.resources[1].inputs["launchTemplateConfigs"][0]["overrides"] = [{"instanceType": "x9.huge"}]
    est = cost.estimate(plan, SMALL)
    assert not any("x9.huge" in r.item for r in est.rows)
    assert any("ec2.spot.x9.huge" in w for w in est.warnings)


def test_an_unpriced_region_fails_naming_the_key():
    plan = _small_plan()
    plan.config["aws:region"] = "eu-north-1"
    with pytest.raises(ValueError, match="aws:region"):
        cost.estimate(plan)


def test_both_stacks_are_priced_from_their_plans(gpu_plan, pipeline_plan):
    gpu, pipe = cost.estimate(gpu_plan), cost.estimate(pipeline_plan)
    assert gpu.warnings == [] and pipe.warnings == []
    fleet = gpu_plan.one("aws:ec2/fleet:Fleet", "gpu-fleet").inputs["targetCapacitySpecification"]
    spot_row = next(r for r in gpu.rows if r.item.endswith("Spot"))
    assert spot_row.quantity == fleet["totalTargetCapacity"] * HOURS
    assert {"NAT gateways", "KMS customer managed keys"} <= {r.item for r in gpu.rows}
    items = {r.item for r in pipe.rows}
    assert {"Lambda ingest: invocations", "S3 raw images: STANDARD storage", "DynamoDB catalog: writes"} <= items
    # 1 TB a day: 1,000,000 images of 1 MB, a month of PUTs
    assert next(r for r in pipe.rows if r.item == "S3: image uploads (PUT)").quantity == pytest.approx(30_416.67, abs=0.01)
    assert gpu.total > 0 and pipe.total > 0


def test_every_price_has_a_date_and_a_source():
    doc = json.loads((cost.PRICES_DIR / "us-east-1.json").read_text())
    assert doc["region"] == "us-east-1" and len(doc["prices"]) > 40
    for key, price in doc["prices"].items():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price["date"]), key
        assert price["source"].startswith("https://aws.amazon.com/"), key
        assert isinstance(price["usd"], (int, float)) and price["usd"] >= 0, key
        assert price["unit"], key
        # Either compared with a source we could read (its URL, dated by that source), or marked unverified.
        assert ("checked_against" in price) != ("unverified" in price), key
        if "checked_against" in price:
            assert price["checked_against"].startswith("https://") and price["checked_how"], key


def test_the_p4d_on_demand_price_is_the_checked_one():
    doc = json.loads((cost.PRICES_DIR / "us-east-1.json").read_text())
    p4d = doc["prices"]["ec2.ondemand.p4d.24xlarge"]
    assert p4d["usd"] == 21.957642 and p4d["date"] == "2026-01-21" and "p4d_instances.js" in p4d["checked_against"]


def test_the_endpoint_the_deployment_workflow_creates_is_priced_from_the_serving_settings(pipeline_plan, prod_plans):
    # Pulumi does not own the endpoint (issue 10), so its two variants are priced from the settings.
    dev = next(r for r in cost.estimate(pipeline_plan).rows if r.item.startswith("SageMaker endpoint"))
    assert dev.item == "SageMaker endpoint: 2 variants x 1 x ml.m5.large" and dev.quantity == 2 * 1 * HOURS
    prod = next(r for r in cost.estimate(prod_plans[1]).rows if r.item.startswith("SageMaker endpoint"))
    assert prod.quantity == 2 * 2 * HOURS  # production runs at least two instances per variant
