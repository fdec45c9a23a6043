"""gpu-training under mocks: one test per requirement of the stack, on the recorded inputs."""
import base64
import gzip
import json

import pytest

from offline import runner
from shared.config_reader import ConfigError

SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"


def _private_subnets(plan):
    return [r for r in plan.of_type(SUBNET) if r.inputs["tags"].get("Tier") == "private"]


def _key_arn(plan):
    return plan.outputs["kms_key_arn"]


def _statements(text):
    return json.loads(text)["Statement"]


# -- network -------------------------------------------------------------------------------------
def test_three_private_subnets_in_three_azs_without_public_ips(gpu_plan):
    private = _private_subnets(gpu_plan)
    assert len(private) == 3
    assert len({s.inputs["availabilityZone"] for s in private}) == 3
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in private)
    assert sorted(s.id for s in private) == sorted(gpu_plan.outputs["private_subnet_ids"])


def test_each_private_subnet_routes_out_through_a_nat_gateway(gpu_plan):
    nat_ids = {r.id for r in gpu_plan.of_type("aws:ec2/natGateway:NatGateway")}
    for subnet in _private_subnets(gpu_plan):
        assoc = next(a for a in gpu_plan.of_type(ASSOC) if a.inputs["subnetId"] == subnet.id)
        default = [r for r in gpu_plan.of_type(ROUTE) if r.inputs["routeTableId"] == assoc.inputs["routeTableId"]]
        assert [r.inputs.get("natGatewayId") for r in default] and all(r.inputs.get("natGatewayId") in nat_ids for r in default)
        assert not any(r.inputs.get("gatewayId") for r in default), "a private subnet routes to the internet gateway"


def test_dev_shares_one_nat_and_per_az_mode_gives_one_per_az(gpu_plan, prod_plans):
    assert len(gpu_plan.of_type("aws:ec2/natGateway:NatGateway")) == 1
    per_az = prod_plans[0]  # the prod stack file sets natMode per-az
    nats = per_az.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 3
    public = {s.id: s for s in per_az.of_type(SUBNET) if s.inputs["tags"].get("Tier") == "public"}
    assert {n.inputs["subnetId"] for n in nats} == set(public), "NAT gateways live in the public subnets only"


def test_flow_logs_go_to_an_encrypted_log_group(gpu_plan):
    flow = gpu_plan.one("aws:ec2/flowLog:FlowLog", "network-flow-log")
    assert flow.inputs["trafficType"] == "ALL" and flow.inputs["logDestinationType"] == "cloud-watch-logs"
    group = next(g for g in gpu_plan.of_type("aws:cloudwatch/logGroup:LogGroup") if g.state["arn"] == flow.inputs["logDestination"])
    assert group.inputs["kmsKeyId"] == _key_arn(gpu_plan)


def test_fleet_egress_is_https_http_and_the_fleet_itself(gpu_plan):
    sg = gpu_plan.one("aws:ec2/securityGroup:SecurityGroup", "network-fleet-sg")
    egress = {(r.inputs.get("cidrIpv4") or r.inputs.get("referencedSecurityGroupId"), r.inputs["ipProtocol"],
               r.inputs.get("fromPort"), r.inputs.get("toPort"))
              for r in gpu_plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.inputs["securityGroupId"] == sg.id}
    assert egress == {("0.0.0.0/0", "tcp", 443, 443), ("0.0.0.0/0", "tcp", 80, 80), (sg.id, "-1", None, None)}
    assert all(r.inputs["description"] for r in gpu_plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"))


def test_the_fleet_security_group_admits_only_fleet_members(gpu_plan):
    sg = gpu_plan.one("aws:ec2/securityGroup:SecurityGroup", "network-fleet-sg")
    ingress = [r for r in gpu_plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.inputs["securityGroupId"] == sg.id]
    assert len(ingress) == 1
    assert ingress[0].inputs["referencedSecurityGroupId"] == sg.id and ingress[0].inputs["ipProtocol"] == "-1"
    assert not ingress[0].inputs.get("cidrIpv4")
    assert gpu_plan.outputs["security_group_id"] == sg.id


def test_gateway_endpoints_serve_every_private_route_table_and_only_this_stacks_data(gpu_plan):
    private_tables = {a.inputs["routeTableId"] for a in gpu_plan.of_type(ASSOC)
                      if a.inputs["subnetId"] in {s.id for s in _private_subnets(gpu_plan)}}
    endpoints = {e.inputs["serviceName"].split(".")[-1]: e for e in gpu_plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert set(endpoints) == {"s3", "dynamodb"}, "dev has no interface endpoints"
    buckets = {gpu_plan.outputs["training_data_bucket_name"], gpu_plan.outputs["artifacts_bucket_name"]}
    for name, endpoint in endpoints.items():
        assert endpoint.inputs["vpcEndpointType"] == "Gateway"
        assert set(endpoint.inputs["routeTableIds"]) == private_tables
    stack_statement = next(s for s in _statements(endpoints["s3"].inputs["policy"]) if s["Sid"] == "StackBuckets")
    assert {r.split(":::")[1].split("/")[0] for r in stack_statement["Resource"]} == buckets
    aws_owned = next(s for s in _statements(endpoints["s3"].inputs["policy"]) if s["Sid"] == "AwsOwnedReadOnly")
    assert aws_owned["Action"] == ["s3:GetObject"]
    table_statement = _statements(endpoints["dynamodb"].inputs["policy"])[0]
    assert all(gpu_plan.outputs["experiments_table_name"] in r for r in table_statement["Resource"])


def test_interface_endpoints_are_a_config_choice(gpu_plan, prod_plans):
    def interface_endpoints(plan):
        return [e for e in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e.inputs["vpcEndpointType"] == "Interface"]
    assert interface_endpoints(gpu_plan) == []
    interface = interface_endpoints(prod_plans[0])  # the prod stack file sets interfaceEndpoints true
    assert {e.inputs["serviceName"].split(".")[-1] for e in interface} >= {"ssm", "ssmmessages", "ec2messages", "monitoring", "logs"}
    assert all(e.inputs["privateDnsEnabled"] and len(e.inputs["subnetIds"]) == 3 for e in interface)


# -- fleet and launch template ----------------------------------------------------------------
def test_the_fleet_keeps_six_spot_p3_instances_across_the_three_subnets(gpu_plan):
    fleet = gpu_plan.one("aws:ec2/fleet:Fleet", "gpu-fleet").inputs
    assert fleet["type"] == "maintain"
    target = fleet["targetCapacitySpecification"]
    # Only the total (updated in place) and the default type: see test_fleet_changes.py.
    assert target == {"defaultTargetCapacityType": "spot", "totalTargetCapacity": 6}
    assert fleet["spotOptions"]["allocationStrategy"] == "price-capacity-optimized"
    # "launch" alone never terminates the at-risk instance: the fleet would creep above target.
    assert fleet["spotOptions"]["maintenanceStrategies"]["capacityRebalance"] == {
        "replacementStrategy": "launch-before-terminate", "terminationDelay": 600}
    overrides = fleet["launchTemplateConfigs"][0]["overrides"]
    assert {o["instanceType"] for o in overrides} == {"p3.2xlarge"}
    assert sorted(o["subnetId"] for o in overrides) == sorted(gpu_plan.outputs["private_subnet_ids"])
    assert fleet["terminateInstances"] is True and fleet["replaceUnhealthyInstances"] is True
    assert gpu_plan.outputs["fleet_id"] == gpu_plan.one("aws:ec2/fleet:Fleet", "gpu-fleet").id
    # Instances boot at once: their role's policy, log groups and hyperparameters must exist first.
    waits_for = {u.split("::")[-1] for u in gpu_plan.one("aws:ec2/fleet:Fleet", "gpu-fleet").dependencies}
    assert {"instance-policy", "training-logs", "system-logs", "hparams-epochs"} <= waits_for


def test_instance_types_are_a_list_and_every_type_covers_every_subnet(prod_plans):
    plan = prod_plans[0]  # the prod stack file lists p3, g5 and g6
    overrides = plan.one("aws:ec2/fleet:Fleet", "gpu-fleet").inputs["launchTemplateConfigs"][0]["overrides"]
    subnets = {o["subnetId"] for o in overrides}
    assert len(subnets) == 3 and len(overrides) == 9
    assert {o["instanceType"] for o in overrides} == {"p3.2xlarge", "g5.2xlarge", "g6.2xlarge"}


def test_launch_template_hardening(gpu_plan):
    lt = gpu_plan.one("aws:ec2/launchTemplate:LaunchTemplate", "gpu-lt").inputs
    assert lt["metadataOptions"]["httpTokens"] == "required"
    assert lt["metadataOptions"]["httpPutResponseHopLimit"] == 2
    assert "keyName" not in lt, "no SSH key: access is through Session Manager"
    ebs = lt["blockDeviceMappings"][0]["ebs"]
    assert ebs["volumeType"] == "gp3" and ebs["encrypted"] == "true" and ebs["kmsKeyId"] == _key_arn(gpu_plan)
    profile = gpu_plan.one("aws:iam/instanceProfile:InstanceProfile", "instance-profile")
    assert lt["iamInstanceProfile"]["arn"] == profile.state["arn"]
    instance_tags = next(t["tags"] for t in lt["tagSpecifications"] if t["resourceType"] == "instance")
    assert instance_tags["Project"] == "gpu-training" and instance_tags["mlplatform:fleet"] == "gpu-training-dev"


def test_the_image_is_the_latest_deep_learning_ami_unless_config_names_one(gpu_plan, projects):
    lookups = [args["name"] for token, args in gpu_plan.invokes if token == "aws:ssm/getParameter:getParameter"]
    assert lookups == ["/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"]
    custom = runner.run(projects["gpu-training"], "dev", config_overrides={"gpu-training:amiId": "ami-0123456789abcdef0"})
    assert custom.one("aws:ec2/launchTemplate:LaunchTemplate", "gpu-lt").inputs["imageId"] == "ami-0123456789abcdef0"
    assert not [t for t, _ in custom.invokes if t == "aws:ssm/getParameter:getParameter"]


def test_user_data_is_the_rendered_bootstrap_for_this_stack(gpu_plan):
    raw = base64.b64decode(gpu_plan.one("aws:ec2/launchTemplate:LaunchTemplate", "gpu-lt").inputs["userData"])
    assert len(raw) <= 16384 and raw[:2] == b"\x1f\x8b", "gzip'd user_data within EC2's limit"
    script = gzip.decompress(raw).decode()
    assert script.startswith("#!/bin/bash")
    for expected in ("MLPlatform/gpu-training-dev", "/mlplatform/gpu-training-dev/training",
                     gpu_plan.outputs["artifacts_bucket_name"], "/ml/hparams/dev"):
        assert expected in script


# -- storage ----------------------------------------------------------------------------------
@pytest.mark.parametrize("component, output", [("storage-training-data", "training_data_bucket_name"),
                                               ("storage-artifacts", "artifacts_bucket_name")])
def test_buckets_are_private_versioned_encrypted_and_archive_to_glacier(gpu_plan, component, output):
    bucket = gpu_plan.one("aws:s3/bucket:Bucket", component).inputs["bucket"]
    assert bucket == gpu_plan.outputs[output]
    assert bucket.startswith({"training_data_bucket_name": "ml-training-data-dev",
                              "artifacts_bucket_name": "ml-model-artifacts-dev"}[output])
    pab = gpu_plan.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{component}-public-access").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    versioning = gpu_plan.one("aws:s3/bucketVersioning:BucketVersioning", f"{component}-versioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    sse = gpu_plan.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       f"{component}-encryption").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": _key_arn(gpu_plan)}
    assert sse["bucketKeyEnabled"] is True
    lifecycle = gpu_plan.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", f"{component}-lifecycle").inputs
    assert lifecycle["transitionDefaultMinimumObjectSize"] == "varies_by_storage_class"
    rules = {r["id"]: r for r in lifecycle["rules"]}
    # Instant Retrieval: GetObject still reads archived training data, scripts and checkpoints.
    assert rules["archive"]["transitions"] == [{"days": 30, "storageClass": "GLACIER_IR"}]
    assert rules["bucket-hygiene"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30


def test_experiments_table(gpu_plan):
    table = gpu_plan.one("aws:dynamodb/table:Table", "storage-experiments").inputs
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert (table["hashKey"], table["rangeKey"]) == ("experiment_id", "run_id")
    assert table["pointInTimeRecovery"]["enabled"] is True
    assert table["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": _key_arn(gpu_plan)}
    index = table["globalSecondaryIndexes"][0]
    assert [(k["attributeName"], k["keyType"]) for k in index["keySchemas"]] == [("status", "HASH"), ("started_at", "RANGE")]


# -- IAM --------------------------------------------------------------------------------------
def test_instance_role_is_scoped_to_this_stack(gpu_plan):
    statements = {s["Sid"]: s for s in _statements(gpu_plan.one("aws:iam/rolePolicy:RolePolicy", "instance-policy").inputs["policy"])}
    buckets = [gpu_plan.outputs["training_data_bucket_name"], gpu_plan.outputs["artifacts_bucket_name"]]
    assert statements["ReadWriteStackObjects"]["Action"] == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    assert sorted(statements["ReadWriteStackObjects"]["Resource"]) == sorted(f"arn:aws:s3:::{b}/*" for b in buckets)
    assert sorted(statements["ListStackBuckets"]["Resource"]) == sorted(f"arn:aws:s3:::{b}" for b in buckets)
    assert all(gpu_plan.outputs["experiments_table_name"] in r for r in statements["ExperimentsTable"]["Resource"])
    assert statements["StackMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MLPlatform/gpu-training-dev"}}
    assert statements["HyperParameters"]["Resource"][1].endswith(":parameter/ml/hparams/dev/*")
    assert statements["StackKey"]["Resource"] == [_key_arn(gpu_plan)]
    assert "s3:RestoreObject" not in statements["ReadWriteStackObjects"]["Action"], "instant retrieval needs no restore"


def test_the_instance_role_reads_no_parameter_but_its_hyperparameters(gpu_plan):
    # AmazonSSMManagedInstanceCore grants ssm:GetParameter* on "*": every parameter of the account.
    role_id = gpu_plan.one("aws:iam/role:Role", "instance-role").id
    attached = [a.inputs["policyArn"] for a in gpu_plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if a.inputs["role"] in (role_id, gpu_plan.outputs["instance_role_name"])]
    assert attached == []
    statements = [s for p in gpu_plan.of_type("aws:iam/rolePolicy:RolePolicy")
                  if p.inputs["role"] in (role_id, gpu_plan.outputs["instance_role_name"]) for s in _statements(p.inputs["policy"])]
    reads = [s for s in statements if any(a.startswith("ssm:GetParameter") for a in s["Action"])]
    assert [s["Sid"] for s in reads] == ["HyperParameters"]
    assert all(r.split(":parameter/")[1].startswith("ml/hparams/dev") for r in reads[0]["Resource"])
    agent = {s["Sid"]: s for s in statements}
    assert agent["SsmAgentRegistration"]["Action"] == ["ssm:UpdateInstanceInformation"]
    assert agent["SsmAgentChannels"]["Action"] == ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                                                   "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"]


def test_the_key_lets_ec2_fleet_launch_encrypted_volumes_and_logs_use_it(gpu_plan):
    key = gpu_plan.one("aws:kms/key:Key", "key-key").inputs
    assert key["enableKeyRotation"] is True
    sids = {s["Sid"] for s in _statements(key["policy"])}
    assert {"EnableIamPolicies", "CloudWatchLogs", "CloudWatchAlarms", "Ec2FleetVolumes", "Ec2FleetVolumeGrants"} <= sids


# -- monitoring and parameters ------------------------------------------------------------------
def test_alarms_watch_fleet_wide_metrics(gpu_plan):
    alarms = {a.inputs["name"].removeprefix("gpu-training-dev-"): a.inputs
              for a in gpu_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    topic = gpu_plan.outputs["alarm_topic_arn"]
    assert set(alarms) == {"gpu-utilization-low", "gpu-metrics-missing", "capacity-below-target", "gpu-errors"}
    for alarm in alarms.values():
        assert alarm["namespace"] == "MLPlatform/gpu-training-dev" and alarm["alarmActions"] == [topic]
        assert "InstanceId" not in (alarm.get("dimensions") or {})
    assert alarms["gpu-utilization-low"]["metricName"] == "nvidia_smi_utilization_gpu"
    assert not alarms["gpu-utilization-low"].get("dimensions")
    assert alarms["gpu-metrics-missing"]["treatMissingData"] == "breaching"
    assert alarms["capacity-below-target"]["treatMissingData"] == "breaching"
    assert alarms["capacity-below-target"]["metricName"] == "FleetInstanceHeartbeat"
    assert alarms["capacity-below-target"]["threshold"] == pytest.approx(5.5 * 5)


def test_alarm_topic_is_encrypted(gpu_plan):
    assert gpu_plan.one("aws:sns/topic:Topic", "alarms").inputs["kmsMasterKeyId"] == _key_arn(gpu_plan)


def test_hyperparameters_are_secure_strings_under_the_stack_prefix(gpu_plan):
    params = {p.inputs["name"]: p.inputs for p in gpu_plan.of_type("aws:ssm/parameter:Parameter")}
    assert set(params) == {"/ml/hparams/dev/learning_rate", "/ml/hparams/dev/batch_size", "/ml/hparams/dev/epochs"}
    assert all(p["type"] == "SecureString" and p["keyId"] == _key_arn(gpu_plan) for p in params.values())
    # The value travels as a Pulumi secret (encrypted in state), shown here in its wire form.
    secret = params["/ml/hparams/dev/batch_size"]["value"]
    assert isinstance(secret, dict) and secret["value"] == "64" and "1b47061264138c4ac30d75fd1eb44270" in secret.values()


# -- config errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, message", [
    ("instanceTypes", '["p3.2xlargee"]', "not an EC2 instance type"),
    ("instanceTypes", '["m5.large"]', "not an x86-64 NVIDIA GPU instance type"),
    ("targetCapacity", "0", "between 1 and 100"),
    ("vpcCidr", "10.20.0.0/33", "IPv4 CIDR"),
    ("vpcCidr", "10.20.1.0/16", "IPv4 CIDR"),
    ("vpcCidr", "8.8.0.0/16", "RFC 1918"),
    # ipaddress calls these private; a VPC cannot use them as its own range.
    ("vpcCidr", "127.0.0.0/16", "RFC 1918"),
    ("vpcCidr", "169.254.0.0/16", "RFC 1918"),
    ("vpcCidr", "100.64.0.0/16", "RFC 1918"),
    ("checkpointHook", "x" * 32000, "at most 512 characters"),
    ("metricsIntervalSeconds", "120", "10, 30, 60, 300"),
    ("glacierStorageClass", "GLACIER", "instant, flexible, deep-archive"),
    ("trainingDataBucketName", "Bad_Name", "not an S3 bucket name"),
    ("artifactsBucketName", "ab", "not an S3 bucket name"),
    ("artifactsBucketName", "a-very-long-artifacts-bucket-name-for-{account}-in-{region}", "S3 allows 63"),
    ("readOnlyBucketNames", '["ml-pipeline-a-very-long-stack-name-processed-{account}-{region}"]', "S3 allows 63"),
    ("amiParameterVersion", "-1", "between 0 and"),
    ("natMode", "some", "single, per-az"),
    ("hyperparameters", '{"learning_rate": "fast", "batch_size": "1", "epochs": "1"}', "learning_rate"),
    ("owner", None, "is required"),
])
def test_a_bad_config_value_fails_with_a_message_naming_the_key(projects, key, value, message):
    with pytest.raises(ConfigError) as error:
        runner.run(projects["gpu-training"], "dev", config_overrides={f"gpu-training:{key}": value})
    assert f"gpu-training:{key}" in str(error.value) and message in str(error.value)


def test_buckets_of_other_stacks_can_be_made_readable_through_role_and_endpoint(projects, gpu_plan, prod_plans):
    assert "ReadOnlyBuckets" not in gpu_plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "network-s3").inputs["policy"]
    # The prod stack file names the pipeline's processed bucket as a template: {account} and {region} filled in.
    plan = prod_plans[0]
    bucket = "ml-pipeline-prod-processed-123456789012-us-east-1"
    endpoint = {s["Sid"]: s for s in _statements(plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "network-s3").inputs["policy"])}
    assert endpoint["ReadOnlyBuckets"]["Action"] == ["s3:GetObject", "s3:ListBucket"]
    assert f"arn:aws:s3:::{bucket}/*" in endpoint["ReadOnlyBuckets"]["Resource"]
    role = {s["Sid"]: s for s in _statements(plan.one("aws:iam/rolePolicy:RolePolicy", "instance-policy").inputs["policy"])}
    assert role["ReadOnlyObjects"] == {"Effect": "Allow", "Action": ["s3:GetObject"], "Sid": "ReadOnlyObjects",
                                       "Resource": [f"arn:aws:s3:::{bucket}/*"]}
    with pytest.raises(ConfigError, match="readOnlyBucketNames"):
        runner.run(projects["gpu-training"], "dev", config_overrides={"gpu-training:readOnlyBucketNames": '["Bad_Name"]'})


def test_the_dev_plan_carries_the_p3_warning_and_prod_with_its_fallbacks_does_not(gpu_plan, prod_plans):
    assert any("Volta" in w for w in gpu_plan.warnings)
    assert not any("Volta" in w for w in prod_plans[0].warnings)


def test_p3_on_the_default_ami_is_warned_about_but_deploys():
    from gpu_training.config import warn_about_volta
    assert "Volta" in warn_about_volta(("p3.2xlarge",), None)
    assert "Volta" in warn_about_volta(("p3.2xlarge", "p3.8xlarge"), None)
    # A newer type beside p3 (the prod stack file lists g5/g6) is a supported fallback: no warning.
    assert warn_about_volta(("p3.2xlarge", "g5.2xlarge"), None) is None
    assert warn_about_volta(("p3.2xlarge",), "ami-0123456789abcdef0") is None
    assert warn_about_volta(("g5.2xlarge",), None) is None
