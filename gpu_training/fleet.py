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


# The service-linked roles EC2 Fleet needs before CreateFleet (EC2 User Guide, "Service-linked role for
# EC2 Fleet"), keyed by role name: they are account singletons, so the stack creates only missing ones.
SERVICE_LINKED_ROLES = {"AWSServiceRoleForEC2Fleet": "ec2fleet.amazonaws.com",
                        "AWSServiceRoleForEC2Spot": "spot.amazonaws.com"}
_SLR_LOGICAL_NAMES = {"AWSServiceRoleForEC2Fleet": "ec2fleet-slr", "AWSServiceRoleForEC2Spot": "spot-slr"}


def resolve_image_id(ami_id: Optional[str], public_parameter: str,
                     parameter_version: Optional[int]) -> pulumi.Input[str]:
    """The fleet's AMI: ``amiId`` from config, else the image the public SSM parameter named at the
    pinned ``parameter_version`` (``name:version`` selects a version), else its current value (which
    the launch template then keeps: see GpuFleetArgs.image_pinned)."""
    if ami_id:
        return ami_id
    name = f"{public_parameter}:{parameter_version}" if parameter_version else public_parameter
    return aws.ssm.get_parameter_output(name=name).value


def missing_service_linked_roles(opts: Optional[pulumi.InvokeOptions] = None) -> list[str]:
    """Names of the fleet's service-linked roles this account lacks (iam:ListRoles under the hood)."""
    found = aws.iam.get_roles(path_prefix="/aws-service-role/",
                              name_regex="^(" + "|".join(SERVICE_LINKED_ROLES) + ")$", opts=opts)
    return [role for role in SERVICE_LINKED_ROLES if role not in set(found.names or ())]


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
    rebalance_termination_delay_s: int = 600
    # What the instances need at boot (log groups, hyperparameters, the role's policy): the fleet, which
    # launches them at once, waits for these.
    boot_dependencies: Sequence[pulumi.Resource] = ()
    # False: image_id follows a moving parameter; the launch template keeps the image it was created
    # with (ignore_changes), so a new DLAMI release never reaches the fleet unannounced.
    image_pinned: bool = True

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
    image_id: pulumi.Output[str]

    def __init__(self, name: str, args: GpuFleetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:compute:GpuFleet", name, None, opts)
        # A brand-new account lacks them and CreateFleet fails; creating one that exists fails too.
        # retain_on_delete: once a later run finds the role (this stack made it), the resource leaves
        # the program, and Pulumi must forget it rather than delete a role the account's fleets use.
        depends_on: list[pulumi.Resource] = [
            aws.iam.ServiceLinkedRole(f"{name}-{_SLR_LOGICAL_NAMES[role]}", aws_service_name=SERVICE_LINKED_ROLES[role],
                                      opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
            for role in missing_service_linked_roles(pulumi.InvokeOptions(parent=self))
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
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=[] if args.image_pinned else ["imageId"]),
        )
        self.image_id = self.launch_template.image_id
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
            # Only the total: ModifyFleet changes nothing else in place, and spot_target_capacity is
            # ForceNew in the provider (a new fleet, then every running instance terminated). With
            # default type spot, the total is all Spot.
            target_capacity_specification=aws.ec2.FleetTargetCapacitySpecificationArgs(
                default_target_capacity_type="spot", total_target_capacity=args.target_capacity),
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
            # The provider's update (ModifyFleet) never sends spot options, so a new termination delay
            # would sit in the state and never reach EC2: replace the fleet on purpose instead.
            # instancePoolsToUseCount: the provider defaults it to 1 (ForceNew) but sends it, and EC2
            # returns it, only for lowest-price; with price-capacity-optimized the state reads 0, and every
            # later `up` would replace the fleet (terraform-provider-aws#43176, open; flattenSpotOptions
            # fills in 1 for "diversified" only). Ignored, the bridge keeps the state's value.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends_on, *args.boot_dependencies],
                                        replace_on_changes=["spotOptions"],
                                        ignore_changes=["spotOptions.instancePoolsToUseCount"]),
        )
        self.fleet_id = self.fleet.id
        self.register_outputs({"fleet_id": self.fleet_id, "launch_template_id": self.launch_template.id,
                               "image_id": self.image_id})
