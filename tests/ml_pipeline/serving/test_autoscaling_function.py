"""The autoscaling function against moto: registration per variant, and deregistration only where an update
changes a variant's instance type (AWS refuses that update on an autoscaled variant)."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tests.ml_pipeline.serving import fakes

ENV = {"LOG_LEVEL": "INFO", "VARIANTS": "champion,challenger", "MIN_CAPACITY": "2", "MAX_CAPACITY": "6",
       "TARGET_INVOCATIONS_PER_INSTANCE": "100", "SCALE_IN_COOLDOWN_SECONDS": "300", "SCALE_OUT_COOLDOWN_SECONDS": "60"}


@pytest.fixture
def world(monkeypatch):
    with mock_aws():
        fn = fakes.load_function("serving_autoscaling", ENV, monkeypatch)
        sm = boto3.client("sagemaker", region_name=fakes.REGION)
        sm.create_model(ModelName="m1", ExecutionRoleArn=f"arn:aws:iam::{fakes.ACCOUNT}:role/r",
                        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/m.tar.gz"})
        sm.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[
            {"VariantName": v, "ModelName": "m1", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}
            for v in ("champion", "challenger")])
        sm.create_endpoint(EndpointName=fakes.ENDPOINT, EndpointConfigName="c1")
        yield fn, boto3.client("application-autoscaling", region_name=fakes.REGION)


def _targets(scaling) -> dict:
    return {t["ResourceId"]: t for t in scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]}


def test_register_puts_a_target_tracking_policy_on_each_variant(world):
    fn, scaling = world
    fn.handler({"action": "register", "endpoint_name": fakes.ENDPOINT}, None)
    targets = _targets(scaling)
    assert sorted(targets) == [f"endpoint/{fakes.ENDPOINT}/variant/{v}" for v in ("challenger", "champion")]
    assert {(t["MinCapacity"], t["MaxCapacity"]) for t in targets.values()} == {(2, 6)}
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    config = policies[0]["TargetTrackingScalingPolicyConfiguration"]
    assert len(policies) == 2 and config["TargetValue"] == 100.0
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_prepare_keeps_targets_for_a_model_change_and_drops_them_for_an_instance_type_change(world):
    fn, scaling = world
    fn.handler({"action": "register", "endpoint_name": fakes.ENDPOINT}, None)
    same = fn.handler({"action": "prepare", "endpoint_name": fakes.ENDPOINT, "instance_type": "ml.m5.large"}, None)
    assert same == {"deregistered": []} and len(_targets(scaling)) == 2
    changed = fn.handler({"action": "prepare", "endpoint_name": fakes.ENDPOINT, "instance_type": "ml.c5.xlarge"}, None)
    assert len(changed["deregistered"]) == 2 and _targets(scaling) == {}
    again = fn.handler({"action": "prepare", "endpoint_name": fakes.ENDPOINT, "instance_type": "ml.c5.xlarge"}, None)
    assert again == {"deregistered": []}


def test_an_unknown_action_fails(world):
    fn, _ = world
    with pytest.raises(ValueError, match="unknown action"):
        fn.handler({"action": "scale", "endpoint_name": fakes.ENDPOINT}, None)
