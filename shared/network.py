"""The private network of a training workload: private subnets in up to three AZs, NAT or no route out at
all, flow logs, the workload's security group, gateway endpoints and optional interface endpoints.

gpu-training's fleet uses it with NAT (drivers, pip and apt come from the internet); ml-pipeline's
SageMaker jobs use it with ``nat_mode="none"`` (issue 9): no internet gateway, no public subnets, no
default route; S3 through the gateway endpoint and the jobs' logs and metrics through interface endpoints.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared import iam
from shared.context import AwsContext
from shared.logs import encrypted_log_group

MAX_AZS = 3
NAT_MODES = ("single", "per-az", "none")
# gpu-training's interfaceEndpoints: what the fleet's agents call (Session Manager, CloudWatch, STS).
INTERFACE_SERVICES = ("ssm", "ssmmessages", "ec2messages", "monitoring", "logs", "sts")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_KEY = re.compile(r"^[a-z][a-z0-9]*$")
_GATEWAY_NAMES = {"s3": "S3", "dynamodb": "DynamoDB"}


def subnet_cidrs(vpc: ipaddress.IPv4Network, az_count: int = MAX_AZS) -> tuple[list[str], list[str]]:
    """Three quarters of the VPC for private subnets; small public subnets (NAT only) in the last quarter."""
    quarters = list(vpc.subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=2))
    return [str(q) for q in quarters[:az_count]], [str(p) for p in public[:az_count]]


@dataclass(frozen=True)
class Workload:
    """The instances the network serves: ``key`` names their security group and its rules
    (``<name>-<key>-sg``); the texts describe them. The defaults are gpu-training's fleet."""

    key: str = "fleet"
    description: str = "GPU fleet: members reach each other on all ports (NCCL)"
    peers_why: str = "distributed training between fleet members"
    members: str = "the fleet"  # in the endpoints group's description
    endpoints_why: Optional[str] = None  # the description of the endpoints group's HTTPS ingress
    # EC2 instances with the CloudWatch and SSM agents read AWS-owned buckets through the S3 endpoint.
    reads_agent_buckets: bool = True

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise ValueError(f"Workload.key must be lower-case letters and digits, got {self.key!r}")


@dataclass(frozen=True)
class EndpointAccess:
    """An interface endpoint's policy: these actions on these resources, for principals of this account."""

    actions: Sequence[str]
    resources: Sequence[pulumi.Input[str]] = ("*",)


@dataclass(frozen=True)
class NetworkArgs:
    """``bucket_arns`` and ``table_arn`` scope the gateway endpoint policies to this stack's data; a
    ``table_arn`` adds the DynamoDB gateway endpoint (S3's is always there). ``interface_endpoints`` are
    service short names (``"logs"``); ``endpoint_access`` gives the named ones a policy scoped to this
    account (the others keep AWS's default policy). ``nat_mode="none"`` builds no internet gateway, public
    subnet, NAT or default route, and the workload's group then reaches only the endpoints."""

    ctx: AwsContext
    name_prefix: str
    vpc_cidr: ipaddress.IPv4Network
    nat_mode: str
    kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    interface_endpoints: Sequence[str] = ()
    endpoint_access: Mapping[str, EndpointAccess] = field(default_factory=dict)
    bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    table_arn: Optional[pulumi.Input[str]] = None
    # Buckets of other stacks the instances read (the pipeline's processed shards).
    read_only_bucket_arns: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    az_count: int = MAX_AZS
    workload: Workload = field(default_factory=Workload)
    # Default /mlplatform/<name_prefix>/vpc-flow-logs; a stack whose log key admits /mlplatform/<prefix>/
    # only names one under it.
    flow_log_group_name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.nat_mode not in NAT_MODES:
            raise ValueError(f"NetworkArgs.nat_mode must be one of {', '.join(NAT_MODES)}, got {self.nat_mode!r}")
        if not 1 <= self.az_count <= MAX_AZS:
            raise ValueError(f"NetworkArgs.az_count must be 1 to {MAX_AZS}, got {self.az_count}")
        bad = [s for s in self.interface_endpoints if not _SERVICE.match(s)]
        if bad or len(set(self.interface_endpoints)) != len(self.interface_endpoints):
            raise ValueError("NetworkArgs.interface_endpoints must be distinct service short names such as 'logs', "
                             f"got {list(self.interface_endpoints)}")
        unknown = sorted(set(self.endpoint_access) - set(self.interface_endpoints))
        if unknown:
            raise ValueError(f"NetworkArgs.endpoint_access names services without an interface endpoint: {unknown}")


def _in_account(args: NetworkArgs) -> dict:
    return {"StringEquals": {"aws:PrincipalAccount": args.ctx.account_id}}


def _s3_endpoint_policy(args: NetworkArgs) -> pulumi.Output[str]:
    ctx = args.ctx
    # AWS-owned buckets the instances still read through the endpoint: the CloudWatch agent package,
    # SSM agent updates and ECR image layers (ECR keeps them in S3).
    aws_owned = pulumi.Output.all(ctx.partition, ctx.region).apply(lambda v: [f"arn:{v[0]}:s3:::{b}/*" for b in (
        f"amazoncloudwatch-agent-{v[1]}", "amazoncloudwatch-agent", f"aws-ssm-{v[1]}", f"amazon-ssm-{v[1]}",
        f"amazon-ssm-packages-{v[1]}", f"{v[1]}-birdwatcher-prod", f"aws-ssm-document-attachments-{v[1]}",
        f"patch-baseline-snapshot-{v[1]}", f"prod-{v[1]}-starport-layer-bucket")])
    in_account = _in_account(args)
    shared_data = [{"Sid": "ReadOnlyBuckets", "Effect": "Allow", "Principal": "*",
                    "Action": ["s3:GetObject", "s3:ListBucket"],
                    "Resource": [*args.read_only_bucket_arns, *(iam.objects_in(b) for b in args.read_only_bucket_arns)],
                    "Condition": in_account}] if args.read_only_bucket_arns else []
    agents = [{"Sid": "AwsOwnedReadOnly", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
               "Resource": aws_owned}] if args.workload.reads_agent_buckets else []
    return iam.document([*shared_data,
        {"Sid": "StackBuckets", "Effect": "Allow", "Principal": "*",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketLocation",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": [*args.bucket_arns, *(iam.objects_in(b) for b in args.bucket_arns)],
         "Condition": in_account},
        *agents,
    ])


def _dynamodb_endpoint_policy(args: NetworkArgs) -> pulumi.Output[str]:
    return iam.document([{
        "Sid": "StackTable", "Effect": "Allow", "Principal": "*",
        "Action": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                   "dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem",
                   "dynamodb:Query", "dynamodb:UpdateItem"],
        "Resource": [args.table_arn, pulumi.Output.concat(args.table_arn, "/index/*")],
        "Condition": _in_account(args),
    }])


def _interface_endpoint_policy(args: NetworkArgs, access: EndpointAccess) -> pulumi.Output[str]:
    resources = list(access.resources)
    return iam.document([{"Sid": "ThisAccount", "Effect": "Allow", "Principal": "*", "Action": list(access.actions),
                          "Resource": resources[0] if len(resources) == 1 else resources,
                          "Condition": _in_account(args)}])


class TrainingNetwork(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list]
    security_group_id: pulumi.Output[str]
    private_route_table_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:network:TrainingNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        w = args.workload
        # Regular AZs only: a Local Zone the account opted into has no p3 capacity or NAT gateways.
        zones = aws.get_availability_zones_output(
            state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOutputOptions(parent=self))
        az_names = zones.names.apply(lambda names: _zones(names, args.az_count))
        private_cidrs, public_cidrs = subnet_cidrs(args.vpc_cidr, args.az_count)

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=str(args.vpc_cidr), enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": f"{args.name_prefix}-vpc"}, opts=child)
        # The default security group allows all traffic between its members; strip its rules so
        # nothing uses it by accident.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=child)
        igw = public_rt = None
        if args.nat_mode != "none":
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)
            public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, opts=child)
            aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                          gateway_id=igw.id, opts=child)

        nats: list[aws.ec2.NatGateway] = []
        private_subnets: list[aws.ec2.Subnet] = []
        self.private_route_table_ids = []
        for i in range(args.az_count):
            az = az_names.apply(lambda names, i=i: names[i])
            suffix = "abc"[i]
            if igw is not None:
                public = aws.ec2.Subnet(f"{name}-public-{suffix}", vpc_id=vpc.id, cidr_block=public_cidrs[i],
                                        availability_zone=az, map_public_ip_on_launch=False,
                                        tags={"Name": f"{args.name_prefix}-public-{suffix}", "Tier": "public"},
                                        opts=child)
                aws.ec2.RouteTableAssociation(f"{name}-public-{suffix}", subnet_id=public.id,
                                              route_table_id=public_rt.id, opts=child)
                if args.nat_mode == "per-az" or i == 0:
                    eip = aws.ec2.Eip(f"{name}-nat-{suffix}", domain="vpc", opts=child)
                    nats.append(aws.ec2.NatGateway(f"{name}-nat-{suffix}", allocation_id=eip.id, subnet_id=public.id,
                                                   tags={"Name": f"{args.name_prefix}-nat-{suffix}"},
                                                   opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])))
            tier = "private" if nats else "isolated"
            private = aws.ec2.Subnet(f"{name}-private-{suffix}", vpc_id=vpc.id, cidr_block=private_cidrs[i],
                                     availability_zone=az, map_public_ip_on_launch=False,
                                     tags={"Name": f"{args.name_prefix}-private-{suffix}", "Tier": tier},
                                     opts=child)
            route_table = aws.ec2.RouteTable(f"{name}-private-{suffix}", vpc_id=vpc.id, opts=child)
            if nats:
                aws.ec2.Route(f"{name}-private-{suffix}-default", route_table_id=route_table.id,
                              destination_cidr_block="0.0.0.0/0", nat_gateway_id=nats[-1].id, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{suffix}", subnet_id=private.id,
                                          route_table_id=route_table.id, opts=child)
            private_subnets.append(private)
            self.private_route_table_ids.append(route_table.id)

        self._flow_logs(name, args, vpc)

        s3 = aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
                                 service_name=args.ctx.region.apply(lambda r: f"com.amazonaws.{r}.s3"),
                                 route_table_ids=self.private_route_table_ids, policy=_s3_endpoint_policy(args),
                                 opts=child)
        gateways = [("s3", s3)]
        if args.table_arn is not None:
            gateways.append(("dynamodb", aws.ec2.VpcEndpoint(
                f"{name}-dynamodb", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
                service_name=args.ctx.region.apply(lambda r: f"com.amazonaws.{r}.dynamodb"),
                route_table_ids=self.private_route_table_ids, policy=_dynamodb_endpoint_policy(args), opts=child)))

        workload_sg = aws.ec2.SecurityGroup(f"{name}-{w.key}-sg", vpc_id=vpc.id, description=w.description, opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-{w.key}-from-{w.key}", security_group_id=workload_sg.id,
                                         referenced_security_group_id=workload_sg.id, ip_protocol="-1",
                                         description=w.peers_why, opts=child)
        endpoint_sg = None
        if args.interface_endpoints:
            endpoint_sg = aws.ec2.SecurityGroup(f"{name}-endpoints-sg", vpc_id=vpc.id,
                                                description=f"Interface endpoints: HTTPS from {w.members}", opts=child)
            aws.vpc.SecurityGroupIngressRule(f"{name}-endpoints-https", security_group_id=endpoint_sg.id,
                                             referenced_security_group_id=workload_sg.id, ip_protocol="tcp",
                                             from_port=443, to_port=443, description=w.endpoints_why, opts=child)
            for service in args.interface_endpoints:
                access = args.endpoint_access.get(service)
                aws.ec2.VpcEndpoint(f"{name}-{service}", vpc_id=vpc.id, vpc_endpoint_type="Interface",
                                    service_name=args.ctx.region.apply(lambda r, s=service: f"com.amazonaws.{r}.{s}"),
                                    subnet_ids=[s.id for s in private_subnets], security_group_ids=[endpoint_sg.id],
                                    private_dns_enabled=True,
                                    policy=_interface_endpoint_policy(args, access) if access else None, opts=child)

        # Egress: only what the workload uses. Security groups never filter the VPC's DNS resolver,
        # instance metadata or the time service, so those need no rule.
        if nats:
            egress = (
                # AWS APIs (through the endpoints or NAT), the CloudWatch agent package, pip, NVIDIA's repository.
                ("egress", dict(cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=443, to_port=443),
                 "HTTPS: AWS APIs, agent and package downloads"),
                # Ubuntu's apt mirrors serve over plain HTTP (packages are signed); the driver install needs them.
                ("egress-http", dict(cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=80, to_port=80),
                 "HTTP: Ubuntu apt mirrors (signed packages)"),
                # torchrun's rendezvous and NCCL pick ports at run time; only fleet members are reachable.
                (f"egress-{w.key}", dict(referenced_security_group_id=workload_sg.id, ip_protocol="-1"),
                 "distributed training between fleet members (NCCL, rendezvous)"),
            )
        else:
            # No route out: the members, the gateway endpoints' prefix lists and the interface endpoints.
            https = dict(ip_protocol="tcp", from_port=443, to_port=443)
            egress = [(f"egress-{w.key}", dict(referenced_security_group_id=workload_sg.id, ip_protocol="-1"),
                       w.peers_why)]
            egress += [(f"egress-{service}", dict(prefix_list_id=endpoint.prefix_list_id, **https),
                        f"{_GATEWAY_NAMES[service]} through the gateway endpoint") for service, endpoint in gateways]
            if endpoint_sg is not None:
                egress.append(("egress-endpoints", dict(referenced_security_group_id=endpoint_sg.id, **https),
                               "HTTPS to the interface endpoints"))
        for rule_name, rule, why in egress:
            aws.vpc.SecurityGroupEgressRule(f"{name}-{w.key}-{rule_name}", security_group_id=workload_sg.id,
                                            description=why, **rule, opts=child)

        self.vpc_id = vpc.id
        self.private_subnet_id_list = [s.id for s in private_subnets]
        self.private_subnet_ids = pulumi.Output.all(*self.private_subnet_id_list)
        self.security_group_id = workload_sg.id
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "security_group_id": self.security_group_id})

    def _flow_logs(self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc) -> None:
        child = pulumi.ResourceOptions(parent=self)
        log_group = encrypted_log_group(
            f"{name}-flow-logs", log_group_name=args.flow_log_group_name or f"/mlplatform/{args.name_prefix}/vpc-flow-logs",
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


def _zones(names: list[str], count: int) -> list[str]:
    if len(names) < count:
        raise ValueError(f"the region has {len(names)} available AZs; the training VPC needs {count}")
    return sorted(names)[:count]
