"""A Spot-only EC2 Fleet of type ``maintain`` and its launch template.

``maintain`` makes EC2 replace interrupted or unhealthy Spot instances on its own, so the fleet stays at
target capacity without an Auto Scaling group. The launch template pins IMDSv2, an encrypted gp3 root
volume and the bootstrap script; there is no SSH key (access is through Session Manager).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from gpu_training.instance_role import FLEET_TAG_KEY
from gpu_training.user_data import compress


def resolve_image_id(ami_id: Optional[str], public_parameter: str) -> pulumi.Input[str]:
    """A custom AMI from config, else the latest Deep Learning AMI named by its public SSM parameter
    (looked up at each deploy, so a new `pulumi up` rolls the fleet onto the newest image)."""
    if ami_id:
        return ami_id
    return aws.ssm.get_parameter_output(name=public_parameter).value


@dataclass(frozen=True)
class GpuFleetArgs:
    fleet_name: str
    instance_types: Sequence[str]
    target_capacity: int
    subnet_ids: Sequence[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    instance_profile_arn: pulumi.Input[str]
    image_id: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    user_data: pulumi.Input[str]
    root_volume_gb: int = 200
    root_device_name: str = "/dev/sda1"
    # Tags for the instances and volumes the fleet launches (a stack transformation only reaches
    # the launch template's own tags).
    instance_tags: Mapping[str, str] = field(default_factory=dict)
    create_service_linked_roles: bool = False
    rebalance_termination_delay_s: int = 600

    def __post_init__(self) -> None:
        if self.target_capacity < 1:
            raise ValueError(f"GpuFleetArgs.target_capacity must be >= 1, got {self.target_capacity}")
        if not self.instance_types:
            raise ValueError("GpuFleetArgs.instance_types must name at least one instance type")
        if not 120 <= self.rebalance_termination_delay_s <= 7200:
            raise ValueError("GpuFleetArgs.rebalance_termination_delay_s must be 120 to 7200 (EC2 Fleet's range)")
        if len(self.instance_types) * len(self.subnet_ids) > 300:
            raise ValueError("GpuFleetArgs: instance types x subnets exceeds EC2 Fleet's 300 overrides")


class GpuFleet(pulumi.ComponentResource):
    fleet: aws.ec2.Fleet
    launch_template: aws.ec2.LaunchTemplate
    fleet_id: pulumi.Output[str]

    def __init__(self, name: str, args: GpuFleetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:compute:GpuFleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        depends_on: list[pulumi.Resource] = []
        if args.create_service_linked_roles:
            # Off by default: most accounts have these roles already, and creating an existing one
            # fails. EC2 creates them itself on first use when the deployer may create roles.
            depends_on = [
                aws.iam.ServiceLinkedRole(f"{name}-ec2fleet-slr", aws_service_name="ec2fleet.amazonaws.com", opts=child),
                aws.iam.ServiceLinkedRole(f"{name}-spot-slr", aws_service_name="spot.amazonaws.com", opts=child),
            ]
        instance_tags = {**args.instance_tags, "Name": args.fleet_name, FLEET_TAG_KEY: args.fleet_name}
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            name=args.fleet_name,
            description=f"Spot GPU training instances of {args.fleet_name}",
            image_id=args.image_id,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=args.instance_profile_arn),
            vpc_security_group_ids=[args.security_group_id],
            # Hop limit 2 lets containers on the instance (one network hop more) reach IMDSv2.
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2,
                instance_metadata_tags="enabled"),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=args.root_device_name,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=args.root_volume_gb, volume_type="gp3", encrypted="true",
                    kms_key_id=args.kms_key_arn, delete_on_termination="true"),
            )],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            # gzip'd: cloud-init unpacks it, and EC2's 16 KB limit applies to the compressed bytes.
            user_data=pulumi.Output.from_input(args.user_data).apply(lambda text: base64.b64encode(compress(text)).decode()),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=instance_tags)
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            opts=child,
        )
        overrides = [
            aws.ec2.FleetLaunchTemplateConfigOverrideArgs(instance_type=itype, subnet_id=subnet)
            for itype in args.instance_types for subnet in args.subnet_ids
        ]
        self.fleet = aws.ec2.Fleet(
            f"{name}-fleet",
            type="maintain",
            launch_template_configs=[aws.ec2.FleetLaunchTemplateConfigArgs(
                launch_template_specification=aws.ec2.FleetLaunchTemplateConfigLaunchTemplateSpecificationArgs(
                    launch_template_id=self.launch_template.id,
                    version=self.launch_template.latest_version.apply(str)),
                overrides=overrides,
            )],
            target_capacity_specification=aws.ec2.FleetTargetCapacitySpecificationArgs(
                default_target_capacity_type="spot", total_target_capacity=args.target_capacity,
                spot_target_capacity=args.target_capacity, on_demand_target_capacity=0),
            spot_options=aws.ec2.FleetSpotOptionsArgs(
                allocation_strategy="price-capacity-optimized",
                instance_interruption_behavior="terminate",
                # On a rebalance recommendation launch a replacement, then terminate the at-risk instance
                # after the delay (its watcher checkpoints meanwhile). Plain "launch" never terminates
                # it, so a maintain fleet would creep above target and run out of Spot quota.
                maintenance_strategies=aws.ec2.FleetSpotOptionsMaintenanceStrategiesArgs(
                    capacity_rebalance=aws.ec2.FleetSpotOptionsMaintenanceStrategiesCapacityRebalanceArgs(
                        replacement_strategy="launch-before-terminate",
                        termination_delay=args.rebalance_termination_delay_s)),
            ),
            replace_unhealthy_instances=True,
            excess_capacity_termination_policy="termination",
            # Destroying the stack terminates the instances instead of orphaning them.
            terminate_instances=True,
            tags={"Name": args.fleet_name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        self.fleet_id = self.fleet.id
        self.register_outputs({"fleet_id": self.fleet_id, "launch_template_id": self.launch_template.id})
