"""The training VPC: private subnets in three AZs, NAT, flow logs, a fleet security group and endpoints."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext
from shared.logs import encrypted_log_group

AZ_COUNT = 3
INTERFACE_SERVICES = ("ssm", "ssmmessages", "ec2messages", "monitoring", "logs", "sts")


def subnet_cidrs(vpc: ipaddress.IPv4Network) -> tuple[list[str], list[str]]:
    """Three quarters of the VPC for private subnets; small public subnets (NAT only) in the last quarter."""
    quarters = list(vpc.subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=2))
    return [str(q) for q in quarters[:AZ_COUNT]], [str(p) for p in public[:AZ_COUNT]]


@dataclass(frozen=True)
class NetworkArgs:
    """``bucket_arns`` and ``table_arn`` scope the gateway endpoint policies to this stack's data."""

    ctx: AwsContext
    name_prefix: str
    vpc_cidr: ipaddress.IPv4Network
    nat_mode: str
    interface_endpoints: bool
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    table_arn: Optional[pulumi.Input[str]] = None
    # Buckets of other stacks the instances read (the pipeline's processed shards).
    read_only_bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.nat_mode not in ("single", "per-az"):
            raise ValueError(f"NetworkArgs.nat_mode must be 'single' or 'per-az', got {self.nat_mode!r}")


def _s3_endpoint_policy(args: NetworkArgs) -> pulumi.Output[str]:
    ctx = args.ctx
    # AWS-owned buckets the instances still read through the endpoint: the CloudWatch agent package,
    # SSM agent updates and ECR image layers (ECR keeps them in S3).
    aws_owned = pulumi.Output.all(ctx.partition, ctx.region).apply(lambda v: [f"arn:{v[0]}:s3:::{b}/*" for b in (
        f"amazoncloudwatch-agent-{v[1]}", "amazoncloudwatch-agent", f"aws-ssm-{v[1]}", f"amazon-ssm-{v[1]}",
        f"amazon-ssm-packages-{v[1]}", f"{v[1]}-birdwatcher-prod", f"aws-ssm-document-attachments-{v[1]}",
        f"patch-baseline-snapshot-{v[1]}", f"prod-{v[1]}-starport-layer-bucket")])
    in_account = {"StringEquals": {"aws:PrincipalAccount": ctx.account_id}}
    shared_data = [{"Sid": "ReadOnlyBuckets", "Effect": "Allow", "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [*args.read_only_bucket_arns, *(iam.objects_in(b) for b in args.read_only_bucket_arns)],
                    "Condition": in_account}] if args.read_only_bucket_arns else []
    return iam.document([*shared_data,
        {"Sid": "StackBuckets", "Effect": "Allow", "Principal": "*",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": [*args.bucket_arns, *(iam.objects_in(b) for b in args.bucket_arns)],
         "Condition": in_account},
        {"Sid": "AwsOwnedReadOnly", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
         "Resource": aws_owned},
    ])


def _dynamodb_endpoint_policy(args: NetworkArgs) -> pulumi.Output[str]:
    return iam.document([{
        "Sid": "StackTable", "Effect": "Allow", "Principal": "*",
        "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                   "dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem",
                   "dynamodb:Query", "dynamodb:UpdateItem"],
        "Resource": [args.table_arn, pulumi.Output.concat(args.table_arn, "/index/*")],
        "Condition": {"StringEquals": {"aws:PrincipalAccount": args.ctx.account_id}},
    }])


class TrainingNetwork(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list]
    security_group_id: pulumi.Output[str]
    private_route_table_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:network:TrainingNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Regular AZs only: a Local Zone the account opted into has no p3 capacity or NAT gateways.
        zones = aws.get_availability_zones_output(
            state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOutputOptions(parent=self))
        az_names = zones.names.apply(_three_zones)
        private_cidrs, public_cidrs = subnet_cidrs(args.vpc_cidr)

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=str(args.vpc_cidr), enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": f"{args.name_prefix}-vpc"}, opts=child)
        # The default security group allows all traffic between its members; strip its rules so
        # nothing uses it by accident.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=child)

        nats: list[aws.ec2.NatGateway] = []
        private_subnets: list[aws.ec2.Subnet] = []
        self.private_route_table_ids = []
        for i in range(AZ_COUNT):
            az = az_names.apply(lambda names, i=i: names[i])
            suffix = "abc"[i]
            public = aws.ec2.Subnet(f"{name}-public-{suffix}", vpc_id=vpc.id, cidr_block=public_cidrs[i],
                                    availability_zone=az, map_public_ip_on_launch=False,
                                    tags={"Name": f"{args.name_prefix}-public-{suffix}", "Tier": "public"}, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{suffix}", subnet_id=public.id,
                                          route_table_id=public_rt.id, opts=child)
            if args.nat_mode == "per-az" or i == 0:
                eip = aws.ec2.Eip(f"{name}-nat-{suffix}", domain="vpc", opts=child)
                nats.append(aws.ec2.NatGateway(f"{name}-nat-{suffix}", allocation_id=eip.id, subnet_id=public.id,
                                               tags={"Name": f"{args.name_prefix}-nat-{suffix}"},
                                               opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])))
            private = aws.ec2.Subnet(f"{name}-private-{suffix}", vpc_id=vpc.id, cidr_block=private_cidrs[i],
                                     availability_zone=az, map_public_ip_on_launch=False,
                                     tags={"Name": f"{args.name_prefix}-private-{suffix}", "Tier": "private"},
                                     opts=child)
            route_table = aws.ec2.RouteTable(f"{name}-private-{suffix}", vpc_id=vpc.id, opts=child)
            aws.ec2.Route(f"{name}-private-{suffix}-default", route_table_id=route_table.id,
                          destination_cidr_block="0.0.0.0/0", nat_gateway_id=nats[-1].id, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{suffix}", subnet_id=private.id,
                                          route_table_id=route_table.id, opts=child)
            private_subnets.append(private)
            self.private_route_table_ids.append(route_table.id)

        self._flow_logs(name, args, vpc)

        fleet_sg = aws.ec2.SecurityGroup(f"{name}-fleet-sg", vpc_id=vpc.id,
                                         description="GPU fleet: members reach each other on all ports (NCCL)",
                                         opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-fleet-from-fleet", security_group_id=fleet_sg.id,
                                         referenced_security_group_id=fleet_sg.id, ip_protocol="-1",
                                         description="distributed training between fleet members", opts=child)
        # Egress: only what the bootstrap and training use. Security groups never filter the VPC's DNS
        # resolver, instance metadata or the time service, so those need no rule.
        egress = (
            # AWS APIs (through the endpoints or NAT), the CloudWatch agent package, pip, NVIDIA's repository.
            ("fleet-egress", dict(cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=443, to_port=443),
             "HTTPS: AWS APIs, agent and package downloads"),
            # Ubuntu's apt mirrors serve over plain HTTP (packages are signed); the driver install needs them.
            ("fleet-egress-http", dict(cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=80, to_port=80),
             "HTTP: Ubuntu apt mirrors (signed packages)"),
            # torchrun's rendezvous and NCCL pick ports at run time; only fleet members are reachable.
            ("fleet-egress-fleet", dict(referenced_security_group_id=fleet_sg.id, ip_protocol="-1"),
             "distributed training between fleet members (NCCL, rendezvous)"),
        )
        for rule_name, rule, why in egress:
            aws.vpc.SecurityGroupEgressRule(f"{name}-{rule_name}", security_group_id=fleet_sg.id, description=why,
                                            **rule, opts=child)

        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
                            service_name=args.ctx.region.apply(lambda r: f"com.amazonaws.{r}.s3"),
                            route_table_ids=self.private_route_table_ids, policy=_s3_endpoint_policy(args), opts=child)
        if args.table_arn is not None:
            aws.ec2.VpcEndpoint(f"{name}-dynamodb", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
                                service_name=args.ctx.region.apply(lambda r: f"com.amazonaws.{r}.dynamodb"),
                                route_table_ids=self.private_route_table_ids, policy=_dynamodb_endpoint_policy(args),
                                opts=child)
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoints-sg", vpc_id=vpc.id,
                                                description="Interface endpoints: HTTPS from the fleet", opts=child)
            aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=endpoint_sg.id,
                                             referenced_security_group_id=fleet_sg.id, ip_protocol="tcp",
                                             from_port=443, to_port=443, opts=child)
            for service in INTERFACE_SERVICES:
                aws.ec2.VpcEndpoint(f"{name}-{service}", vpc_id=vpc.id, vpc_endpoint_type="Interface",
                                    service_name=args.ctx.region.apply(lambda r, s=service: f"com.amazonaws.{r}.{s}"),
                                    subnet_ids=[s.id for s in private_subnets], security_group_ids=[endpoint_sg.id],
                                    private_dns_enabled=True, opts=child)

        self.vpc_id = vpc.id
        self.private_subnet_id_list = [s.id for s in private_subnets]
        self.private_subnet_ids = pulumi.Output.all(*self.private_subnet_id_list)
        self.security_group_id = fleet_sg.id
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "security_group_id": self.security_group_id})

    def _flow_logs(self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc) -> None:
        child = pulumi.ResourceOptions(parent=self)
        log_group = encrypted_log_group(f"{name}-flow-logs", log_group_name=f"/mlplatform/{args.name_prefix}/vpc-flow-logs",
                                        kms_key_arn=args.kms_key_arn, retention_days=args.log_retention_days, opts=child)
        role = aws.iam.Role(f"{name}-flow-logs-role", description="VPC flow logs delivery to CloudWatch Logs",
                            assume_role_policy=iam.service_trust_policy("vpc-flow-logs.amazonaws.com",
                                                                        source_account=args.ctx.account_id),
                            opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs-policy", role=role.id, policy=iam.document([
            iam.allow(["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                      [log_group.arn, pulumi.Output.concat(log_group.arn, ":*")], sid="FlowLogGroup"),
            # In AWS's documented flow-log role; it lists log groups and cannot be scoped to one.
            iam.unscoped(["logs:DescribeLogGroups"], sid="FlowLogDescribe",
                         why="DescribeLogGroups has no resource-level permissions"),
        ]), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                        log_destination=log_group.arn, iam_role_arn=role.arn, max_aggregation_interval=60, opts=child)


def _three_zones(names: list[str]) -> list[str]:
    if len(names) < AZ_COUNT:
        raise ValueError(f"the region has {len(names)} available AZs; the training VPC needs {AZ_COUNT}")
    return sorted(names)[:AZ_COUNT]
