"""Private subnets without any route to the internet, for the SageMaker jobs of the training workflow.

shared/network.py's TrainingNetwork always builds NAT gateways (the GPU fleet needs them); the jobs do
not: with network isolation the containers have no network at all. SageMaker's own processes on the job's
instances use the VPC of VpcConfig for the data and for the job's logs and metrics (AWS knowledge center,
"sagemaker-access-network-isolation"): S3 through the gateway endpoint, CloudWatch Logs and CloudWatch
metrics (the metric definitions' series, the tuning objective) through interface endpoints, all scoped to
this account's principals. The gateway endpoint is free; the two interface endpoints are billed per hour
and AZ (the plan's cost lists them).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext

AZ_COUNT = 2
# What the SageMaker agent on a job's instances calls besides S3 (with the execution role): job logs, metrics.
# (PutMetricData has no resource-level permissions; SageMaker's log groups are /aws/sagemaker/<kind>Jobs.)
INTERFACE_ENDPOINTS = {"logs": (["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams",
                                 "logs:PutLogEvents"], "log-group:/aws/sagemaker/*"),
                       "monitoring": (["cloudwatch:PutMetricData"], None)}


@dataclass(frozen=True)
class IsolatedSubnetsArgs:
    ctx: AwsContext
    name_prefix: str
    bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    vpc_cidr: str = "10.30.0.0/22"

    def __post_init__(self) -> None:
        network = ipaddress.IPv4Network(self.vpc_cidr)
        if not network.is_private or network.prefixlen > 24:
            raise ValueError(f"IsolatedSubnetsArgs.vpc_cidr must be a private /24 or larger, got {self.vpc_cidr}")


class IsolatedSubnets(pulumi.ComponentResource):
    private_subnet_ids: pulumi.Output[list]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: IsolatedSubnetsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:training:IsolatedSubnets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones_output(
            state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOutputOptions(parent=self))
        cidrs = [str(c) for c in ipaddress.IPv4Network(args.vpc_cidr).subnets(prefixlen_diff=1)]
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                          tags={"Name": f"{args.name_prefix}-training-jobs"}, opts=child)
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=child)
        # One route table with no default route: only the VPC itself and the S3 gateway endpoint.
        route_table = aws.ec2.RouteTable(f"{name}-rt", vpc_id=vpc.id, opts=child)
        subnets = []
        for i, suffix in enumerate("ab"[:AZ_COUNT]):
            subnet = aws.ec2.Subnet(f"{name}-private-{suffix}", vpc_id=vpc.id, cidr_block=cidrs[i],
                                    availability_zone=zones.names.apply(lambda names, i=i: sorted(names)[i]),
                                    map_public_ip_on_launch=False,
                                    tags={"Name": f"{args.name_prefix}-training-{suffix}", "Tier": "isolated"},
                                    opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{suffix}", subnet_id=subnet.id,
                                          route_table_id=route_table.id, opts=child)
            subnets.append(subnet)
        in_account = {"StringEquals": {"aws:PrincipalAccount": args.ctx.account_id}}
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
                            service_name=args.ctx.region.apply(lambda r: f"com.amazonaws.{r}.s3"),
                            route_table_ids=[route_table.id], policy=iam.document([{
                                "Sid": "StackBuckets", "Effect": "Allow", "Principal": "*",
                                "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation",
                                           "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                                "Resource": [*args.bucket_arns, *(iam.objects_in(b) for b in args.bucket_arns)],
                                "Condition": in_account}]), opts=child)
        sg = aws.ec2.SecurityGroup(f"{name}-jobs-sg", vpc_id=vpc.id,
                                   description="SageMaker jobs: members of one job reach each other; HTTPS out",
                                   opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-jobs-from-jobs", security_group_id=sg.id,
                                         referenced_security_group_id=sg.id, ip_protocol="-1",
                                         description="distributed training between the instances of a job", opts=child)
        aws.vpc.SecurityGroupEgressRule(f"{name}-jobs-to-jobs", security_group_id=sg.id,
                                        referenced_security_group_id=sg.id, ip_protocol="-1",
                                        description="distributed training between the instances of a job", opts=child)
        # S3's gateway endpoint serves public address ranges; without a default route nothing else is reachable.
        aws.vpc.SecurityGroupEgressRule(f"{name}-jobs-https", security_group_id=sg.id, cidr_ipv4="0.0.0.0/0",
                                        ip_protocol="tcp", from_port=443, to_port=443,
                                        description="S3 through the gateway endpoint", opts=child)
        endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoints-sg", vpc_id=vpc.id,
                                            description="Interface endpoints: HTTPS from the jobs", opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=endpoint_sg.id,
                                         referenced_security_group_id=sg.id, ip_protocol="tcp", from_port=443,
                                         to_port=443, description="the jobs' logs and metrics", opts=child)
        for service, (actions, resource) in INTERFACE_ENDPOINTS.items():
            aws.ec2.VpcEndpoint(f"{name}-{service}", vpc_id=vpc.id, vpc_endpoint_type="Interface",
                                service_name=args.ctx.region.apply(lambda r, s=service: f"com.amazonaws.{r}.{s}"),
                                subnet_ids=[s.id for s in subnets], security_group_ids=[endpoint_sg.id],
                                private_dns_enabled=True, policy=iam.document([{
                                    "Sid": "JobTelemetry", "Effect": "Allow", "Principal": "*", "Action": actions,
                                    "Resource": args.ctx.arn("logs", resource) if resource else "*",
                                    "Condition": in_account}]), opts=child)
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in subnets])
        self.security_group_id = sg.id
        self.register_outputs({"private_subnet_ids": self.private_subnet_ids, "security_group_id": self.security_group_id})
