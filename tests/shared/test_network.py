"""shared/network.py's TrainingNetwork in its isolated mode (nat_mode none) built alone under mocks, and its
argument checks. gpu-training's NAT modes are covered by tests/gpu_training (plans unchanged, routes, egress)."""
import ipaddress
import json

import pytest

from offline.runner import run_callable
from shared.context import AwsContext
from shared.network import EndpointAccess, NetworkArgs, TrainingNetwork, Workload

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
BUCKET = "arn:aws:s3:::b"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"


def _args(**overrides):
    values = dict(ctx=None, name_prefix="p", vpc_cidr=ipaddress.IPv4Network("10.40.0.0/22"), nat_mode="none",
                  kms_key_arn=KEY, log_retention_days=30)
    return NetworkArgs(**{**values, **overrides})


@pytest.mark.parametrize("overrides, message", [
    (dict(nat_mode="off"), "nat_mode must be one of single, per-az, none"),
    (dict(az_count=4), "az_count must be 1 to 3"),
    (dict(az_count=0), "az_count must be 1 to 3"),
    (dict(interface_endpoints=("logs", "logs")), "distinct service short names"),
    (dict(interface_endpoints=("com.amazonaws.us-east-1.logs ",)), "distinct service short names"),
    (dict(interface_endpoints=("logs",), endpoint_access={"sts": EndpointAccess(["sts:GetCallerIdentity"])}),
     r"endpoint_access names services without an interface endpoint: \['sts'\]"),
])
def test_network_args_name_the_field_and_the_allowed_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        _args(**overrides)
    with pytest.raises(ValueError, match="Workload.key"):
        Workload(key="Jobs-1")


def test_isolated_mode_has_no_way_out_and_reaches_only_its_endpoints():
    def program():
        TrainingNetwork("n", _args(ctx=AwsContext.lookup(), az_count=1, table_arn=TABLE, bucket_arns=(BUCKET,),
                                   interface_endpoints=("sts", "logs"),
                                   endpoint_access={"logs": EndpointAccess(["logs:PutLogEvents"])},
                                   workload=Workload(key="jobs", description="d", peers_why="peers", members="the jobs",
                                                     reads_agent_buckets=False)))
    plan = run_callable(program)
    kinds = {r.type.split(":")[-1] for r in plan.resources}
    assert not kinds & {"InternetGateway", "NatGateway", "Eip", "Route"}
    subnet, = plan.of_type("aws:ec2/subnet:Subnet")
    assert subnet.inputs["cidrBlock"] == "10.40.0.0/24" and subnet.inputs["tags"]["Tier"] == "isolated"
    s3, dynamodb = (plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", f"n-{s}") for s in ("s3", "dynamodb"))
    assert [st["Sid"] for st in json.loads(s3.inputs["policy"])["Statement"]] == ["StackBuckets"]
    sg = plan.one("aws:ec2/securityGroup:SecurityGroup", "n-jobs-sg").state["id"]
    endpoints_sg = plan.one("aws:ec2/securityGroup:SecurityGroup", "n-endpoints-sg").state["id"]
    egress = {r.name: r.inputs for r in plan.of_type(EGRESS)}
    assert {n: (r["securityGroupId"], r.get("referencedSecurityGroupId") or r.get("prefixListId"), r.get("fromPort"))
            for n, r in egress.items()} == {
        "n-jobs-egress-jobs": (sg, sg, None), "n-jobs-egress-s3": (sg, s3.state["prefixListId"], 443),
        "n-jobs-egress-dynamodb": (sg, dynamodb.state["prefixListId"], 443),
        "n-jobs-egress-endpoints": (sg, endpoints_sg, 443)}
    # An endpoint named in endpoint_access gets a policy for this account's principals; the others keep AWS's default.
    logs = plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "n-logs").inputs
    assert json.loads(logs["policy"])["Statement"] == [{
        "Sid": "ThisAccount", "Effect": "Allow", "Principal": "*", "Action": ["logs:PutLogEvents"], "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}}]
    assert "policy" not in plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "n-sts").inputs
    assert plan.one("aws:cloudwatch/logGroup:LogGroup", "n-flow-logs").inputs["name"] == "/mlplatform/p/vpc-flow-logs"
