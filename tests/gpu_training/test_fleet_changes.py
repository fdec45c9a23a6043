"""What a change to a deployed gpu-training stack does to the fleet (issue 8): scaling, the rebalance
delay, the AMI, the service-linked roles, the archive class.

Which Fleet inputs the provider updates in place, from terraform-provider-aws
internal/service/ec2/ec2_fleet.go (the SDK v2 version behind pulumi-aws 7.x; read with the search tool,
file id 1650150213): resourceFleetUpdate sends ModifyFleet with `context`,
`excess_capacity_termination_policy`, `launch_template_config` and
`target_capacity_specification.0.total_target_capacity` only ("Currently we only support total target
capacity modification"); tags go through UpdateTags; `terminate_instances` is read only at delete.
ForceNew in the schema: `type`, `replace_unhealthy_instances`, `spot_options` (the whole block),
`on_demand_options`, `terminate_instances_with_expiration`, `valid_from`, `valid_until` and, in
`target_capacity_specification`, `default_target_capacity_type`, `spot_target_capacity`,
`on_demand_target_capacity`, `target_capacity_unit_type`.
"""
from __future__ import annotations

import json

import pytest

from offline import mocks, runner
from offline.mocks import MOCK_AMI_ID, RecordingMonitor

IN_PLACE = {"context", "excessCapacityTerminationPolicy", "launchTemplateConfigs",
            "targetCapacitySpecification.totalTargetCapacity", "tags", "terminateInstances"}
FLEET = "aws:ec2/fleet:Fleet"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
SLR = "aws:iam/serviceLinkedRole:ServiceLinkedRole"


def _paths(value, prefix=""):
    """Flatten nested inputs to {dotted path: leaf value}; list items keep their index."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _paths(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _paths(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def _top_level_field(path: str) -> str:
    head = path.split(".")[0]
    return "targetCapacitySpecification." + path.split(".")[1] if head == "targetCapacitySpecification" else head


class _OptionsRecorder:
    """Records the resource options Pulumi sends the engine (the mocks' records lack them)."""

    def __init__(self, monkeypatch):
        self.options: dict[str, dict] = {}
        original = RecordingMonitor.RegisterResource

        def register(monitor, request):
            self.options[request.name] = {"replaceOnChanges": list(request.replaceOnChanges),
                                          "ignoreChanges": list(request.ignoreChanges),
                                          "retainOnDelete": request.retainOnDelete}
            return original(monitor, request)

        monkeypatch.setattr(RecordingMonitor, "RegisterResource", register)


@pytest.fixture(scope="module")
def variant(projects):
    """One plan with every fleet-affecting setting away from its default, options recorded."""
    mp = pytest.MonkeyPatch()
    recorder = _OptionsRecorder(mp)
    # Log groups under other names: whatever reads them must take the names from the resources.
    import shared.logs
    original = shared.logs.encrypted_log_group
    mp.setattr(shared.logs, "encrypted_log_group",
               lambda name, *, log_group_name, **kw: original(name, log_group_name=log_group_name + "-renamed", **kw))
    try:
        plan = runner.run(projects["gpu-training"], "dev", config_overrides={
            "gpu-training:rebalanceTerminationDelaySeconds": "900",
            "gpu-training:glacierStorageClass": "flexible",
            "gpu-training:amiParameterVersion": "42",
            "gpu-training:metricsIntervalSeconds": "300",
        })
    finally:
        mp.undo()
    return plan, recorder.options


def test_scaling_changes_only_fields_the_provider_updates_in_place(gpu_plan, projects):
    # GIVEN the dev plan (targetCapacity 6) WHEN targetCapacity becomes 8
    scaled = runner.run(projects["gpu-training"], "dev", config_overrides={"gpu-training:targetCapacity": "8"})
    before = _paths(gpu_plan.one(FLEET, "gpu-fleet").inputs)
    after = _paths(scaled.one(FLEET, "gpu-fleet").inputs)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    # THEN only the total changed, and nothing the provider replaces the fleet for
    assert changed == {"targetCapacitySpecification.totalTargetCapacity"}
    assert {_top_level_field(p) for p in changed} <= IN_PLACE
    assert after["targetCapacitySpecification.totalTargetCapacity"] == 8
    assert not any(p.startswith(("targetCapacitySpecification.spot", "targetCapacitySpecification.onDemand"))
                   for p in after), "ForceNew capacity fields must stay unset"


def test_the_rebalance_delay_reaches_the_fleet_and_replaces_it_on_purpose(variant):
    plan, options = variant
    strategy = plan.one(FLEET, "gpu-fleet").inputs["spotOptions"]["maintenanceStrategies"]["capacityRebalance"]
    assert strategy == {"replacementStrategy": "launch-before-terminate", "terminationDelay": 900}
    # ModifyFleet never sends spot options: without this the new delay would never reach EC2.
    assert options["gpu-fleet"]["replaceOnChanges"] == ["spotOptions"]


def test_a_later_up_does_not_replace_the_fleet_over_the_defaulted_pool_count(gpu_plan, monkeypatch):
    # The provider's schema defaults spot_options.instance_pools_to_use_count to 1 (ForceNew), but
    # expandSpotOptionsRequest sends it and EC2 returns it only for lowest-price, and flattenSpotOptions
    # fills in 1 only for "diversified" (ec2_fleet.go, file id 1650150213). With price-capacity-optimized
    # the state reads 0, the config 1: every `up` after the first replaced the fleet
    # (terraform-provider-aws#43176, open). ignoreChanges keeps the state's value; the bridge honours a
    # nested path of a MaxItems-1 block (pulumi-terraform-bridge ignore_changes_test.go,
    # "ListIndexNestedFieldMaxItemsOne": no diff).
    spot = gpu_plan.one(FLEET, "gpu-fleet").inputs["spotOptions"]
    assert spot["allocationStrategy"] != "lowest-price" and "instancePoolsToUseCount" not in spot
    recorder = _OptionsRecorder(monkeypatch)
    _fleet_alone()
    assert recorder.options["gpu-fleet"]["ignoreChanges"] == ["spotOptions.instancePoolsToUseCount"]
    assert recorder.options["gpu-fleet"]["replaceOnChanges"] == ["spotOptions"]


def test_a_pinned_parameter_version_selects_that_image_and_is_not_held(variant):
    plan, options = variant
    lookups = [args["name"] for token, args in plan.invokes if token == "aws:ssm/getParameter:getParameter"]
    assert lookups == ["/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id:42"]
    assert options["gpu-lt"]["ignoreChanges"] == []
    assert plan.outputs["image_id"] == plan.one(LT, "gpu-lt").inputs["imageId"] == MOCK_AMI_ID


def test_an_unpinned_image_is_resolved_once_and_held_by_the_launch_template(gpu_plan, monkeypatch):
    # The dev plan shows the image it resolves...
    assert gpu_plan.outputs["image_id"] == gpu_plan.one(LT, "gpu-lt").inputs["imageId"] == MOCK_AMI_ID
    # ...and the launch template keeps the image it was created with when the parameter moves on.
    recorder = _OptionsRecorder(monkeypatch)
    _fleet_alone(image_pinned=False)
    assert recorder.options["gpu-lt"]["ignoreChanges"] == ["imageId"]


def test_the_archive_class_is_configurable_and_restores_are_granted_where_reads_need_them(variant):
    plan, _ = variant
    for bucket in ("storage-training-data", "storage-artifacts"):
        rules = plan.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", f"{bucket}-lifecycle")
        archive = next(r for r in rules.inputs["rules"] if r["id"] == "archive")
        assert archive["transitions"] == [{"days": 30, "storageClass": "GLACIER"}]
    statements = {s["Sid"]: s for s in json.loads(plan.one("aws:iam/rolePolicy:RolePolicy", "instance-policy")
                                                  .inputs["policy"])["Statement"]}
    assert "s3:RestoreObject" in statements["ReadWriteStackObjects"]["Action"]


def test_the_metrics_interval_reaches_agent_and_capacity_alarm(variant):
    plan, _ = variant
    alarm = next(a.inputs for a in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
                 if a.inputs["name"].endswith("capacity-below-target"))
    assert alarm["threshold"] == pytest.approx(5.5 * 1)  # one heartbeat per instance per 300 s period
    assert '"metrics_collection_interval":300' in _user_data(plan)


def test_the_instances_get_the_log_group_names_from_the_log_groups(variant):
    plan, _ = variant
    script = _user_data(plan)
    assert plan.outputs["training_log_group_name"] == "/mlplatform/gpu-training-dev/training-renamed"
    assert '"log_group_name":"/mlplatform/gpu-training-dev/training-renamed"' in script
    assert '"log_group_name":"/mlplatform/gpu-training-dev/system-renamed"' in script
    assert '"log_group_name":"/mlplatform/gpu-training-dev/training"' not in script


def _user_data(plan) -> str:
    import base64
    import gzip
    return gzip.decompress(base64.b64decode(plan.one(LT, "gpu-lt").inputs["userData"])).decode()


def _fleet_alone(image_pinned: bool = True) -> runner.Plan:
    from gpu_training.fleet import GpuFleet, GpuFleetArgs

    def program():
        GpuFleet("gpu", GpuFleetArgs(
            fleet_name="f", instance_types=["g5.2xlarge"], target_capacity=2, subnet_ids=["subnet-1"],
            security_group_id="sg-1", instance_profile_arn="arn:aws:iam::123456789012:instance-profile/p",
            image_id=MOCK_AMI_ID, kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k", user_data="#!/bin/bash\n",
            image_pinned=image_pinned))

    return runner.run_callable(program)


def test_existing_service_linked_roles_are_looked_up_not_created(gpu_plan):
    lookups = [args for token, args in gpu_plan.invokes if token == "aws:iam/getRoles:getRoles"]
    assert lookups and lookups[0]["pathPrefix"] == "/aws-service-role/"
    assert gpu_plan.of_type(SLR) == []


def test_a_brand_new_account_gets_the_missing_service_linked_roles_before_the_fleet(monkeypatch):
    monkeypatch.setattr(mocks.RecordingMocks, "service_linked_roles", ("AWSServiceRoleForEC2Spot",))
    recorder = _OptionsRecorder(monkeypatch)
    plan = _fleet_alone()
    roles = plan.of_type(SLR)
    assert [r.inputs["awsServiceName"] for r in roles] == ["ec2fleet.amazonaws.com"]
    assert recorder.options["gpu-ec2fleet-slr"]["retainOnDelete"] is True
    assert roles[0].urn in plan.one(FLEET, "gpu-fleet").dependencies
    monkeypatch.setattr(mocks.RecordingMocks, "service_linked_roles", ())
    assert sorted(r.inputs["awsServiceName"] for r in _fleet_alone().of_type(SLR)) == [
        "ec2fleet.amazonaws.com", "spot.amazonaws.com"]
