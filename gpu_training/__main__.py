"""gpu-training: wiring only. Config in config.py, resources in the components, exports per shared.contracts."""
import pulumi

from gpu_training import config as stack_config
from gpu_training.dashboard import GpuDashboard, GpuDashboardArgs
from gpu_training.fleet import GpuFleet, GpuFleetArgs, resolve_image_id
from gpu_training.hyperparameters import HyperParameterStore, HyperParameterStoreArgs
from gpu_training.instance_role import InstanceRoleArgs, TrainingInstanceRole
from gpu_training.monitoring import FleetAlarms, FleetAlarmsArgs
from gpu_training.run_commands import TrainingRunCommands, TrainingRunCommandsArgs
from gpu_training.storage import TrainingStorage, TrainingStorageArgs
from gpu_training.user_data import UserDataParams, render_user_data
from shared.alarm_topic import AlarmTopic, AlarmTopicArgs
from shared.budget import StackBudget, StackBudgetArgs
from shared.context import AwsContext
from shared.contracts import GPU_TRAINING_PROJECT
from shared.kms import EncryptionKey, EncryptionKeyArgs
from shared.logs import encrypted_log_group
from shared.naming import physical_name
from shared.network import INTERFACE_SERVICES, NetworkArgs, TrainingNetwork
from shared.tagging import register_stack_tags

cfg = stack_config.load()
register_stack_tags(cfg.tags)
ctx = AwsContext.lookup()
prefix = physical_name(GPU_TRAINING_PROJECT, cfg.stack)
namespace = f"MLPlatform/{prefix}"

key = EncryptionKey("key", EncryptionKeyArgs(
    ctx=ctx, description=f"{prefix}: buckets, table, logs, parameters, EBS volumes", alias=prefix,
    services=("logs", "cloudwatch", "ec2-fleet"),
    log_group_prefixes=(f"/mlplatform/{prefix}/",)))  # training, system and flow logs

storage = TrainingStorage("storage", TrainingStorageArgs(
    training_data_bucket_name=ctx.bucket_name(cfg.training_data_bucket_name),
    artifacts_bucket_name=ctx.bucket_name(cfg.artifacts_bucket_name),
    experiments_table_name=f"{prefix}-experiments",
    kms_key_arn=key.arn,
    glacier_after_days=cfg.glacier_after_days,
    glacier_storage_class=cfg.glacier_storage_class,
    noncurrent_version_days=cfg.noncurrent_version_days,
    deletion_protection=cfg.deletion_protection,
))
bucket_arns = [storage.training_data.arn, storage.artifacts.arn]
read_only_bucket_arns = [ctx.bucket_arn(name) for name in cfg.read_only_bucket_names]

network = TrainingNetwork("network", NetworkArgs(
    ctx=ctx, name_prefix=prefix, vpc_cidr=cfg.vpc_cidr, nat_mode=cfg.nat_mode,
    interface_endpoints=INTERFACE_SERVICES if cfg.interface_endpoints else (), kms_key_arn=key.arn, log_retention_days=cfg.log_retention_days,
    bucket_arns=bucket_arns, table_arn=storage.experiments.arn, read_only_bucket_arns=read_only_bucket_arns,
))

training_logs = encrypted_log_group("training-logs", log_group_name=f"/mlplatform/{prefix}/training",
                                    kms_key_arn=key.arn, retention_days=cfg.log_retention_days)
system_logs = encrypted_log_group("system-logs", log_group_name=f"/mlplatform/{prefix}/system",
                                  kms_key_arn=key.arn, retention_days=cfg.log_retention_days)

role = TrainingInstanceRole("instance", InstanceRoleArgs(
    ctx=ctx, fleet_name=prefix, bucket_arns=bucket_arns, table_arn=storage.experiments.arn, kms_key_arn=key.arn,
    log_group_arns=[training_logs.arn, system_logs.arn], metric_namespace=namespace, hparams_prefix=cfg.hparams_prefix,
    read_only_bucket_arns=read_only_bucket_arns, may_restore_archived=cfg.glacier_storage_class != "GLACIER_IR",
))

hparams = HyperParameterStore("hparams", HyperParameterStoreArgs(
    prefix=cfg.hparams_prefix, values=cfg.hyperparameters.as_strings(), kms_key_arn=key.arn))

bootstrap = pulumi.Output.all(ctx.region, storage.artifacts.name, storage.experiments.name, training_logs.name,
                              system_logs.name).apply(lambda v: UserDataParams(
    region=v[0], stack=cfg.stack, fleet_name=prefix, metric_namespace=namespace,
    training_log_group=v[3], system_log_group=v[4], artifacts_bucket=v[1], experiments_table=v[2],
    checkpoint_dir=cfg.checkpoint_dir, checkpoint_hook=cfg.checkpoint_hook,
    hparams_prefix=cfg.hparams_prefix, install_driver_if_missing=cfg.install_driver_if_missing,
    metrics_interval_s=cfg.metrics_interval_s))

fleet = GpuFleet("gpu", GpuFleetArgs(
    fleet_name=prefix, instance_types=cfg.instance_types, target_capacity=cfg.target_capacity,
    subnet_ids=network.private_subnet_id_list, security_group_id=network.security_group_id,
    instance_profile_arn=role.instance_profile.arn, kms_key_arn=key.arn, user_data=bootstrap.apply(render_user_data),
    image_id=resolve_image_id(cfg.ami_id, cfg.ami_parameter, cfg.ami_parameter_version), image_pinned=cfg.image_pinned,
    root_volume_gb=cfg.root_volume_gb, root_device_name=cfg.root_device_name, instance_tags=cfg.tags.as_dict(),
    rebalance_termination_delay_s=cfg.rebalance_termination_delay_s,
    boot_dependencies=[training_logs, system_logs, hparams, role.policy],
))

run_commands = TrainingRunCommands("runs", TrainingRunCommandsArgs(
    ctx=ctx, fleet_name=prefix, hparams_prefix=cfg.hparams_prefix, instance_role_name=role.role.name,
    launch_template_id=fleet.launch_template.id))

topic = AlarmTopic("alarms", AlarmTopicArgs(ctx=ctx, topic_name=f"{prefix}-alarms", kms_key_arn=key.arn,
                                            email_endpoints=cfg.alarm_emails))
FleetAlarms("fleet", FleetAlarmsArgs(
    fleet_name=prefix, namespace=namespace, alarm_topic_arn=topic.arn, target_capacity=cfg.target_capacity,
    low_utilization_percent=cfg.low_utilization_percent, metrics_interval_s=cfg.metrics_interval_s,
))
GpuDashboard("dashboard", GpuDashboardArgs(
    fleet_name=prefix, namespace=namespace, target_capacity=cfg.target_capacity,
    metrics_interval_s=cfg.metrics_interval_s, region=ctx.region))

if cfg.budget.monthly_usd > 0:
    StackBudget("budget", StackBudgetArgs(budget_name=f"{prefix}-monthly", monthly_usd=cfg.budget.monthly_usd, tags=cfg.tags,
                                          emails=cfg.alarm_emails, actual_alert_percent=cfg.budget.actual_alert_percent))

pulumi.export("training_data_bucket_name", storage.training_data.name)
pulumi.export("artifacts_bucket_name", storage.artifacts.name)
pulumi.export("experiments_table_name", storage.experiments.name)
pulumi.export("fleet_id", fleet.fleet_id)
pulumi.export("instance_role_name", role.role.name)
pulumi.export("instance_role_arn", role.role.arn)
pulumi.export("vpc_id", network.vpc_id)
pulumi.export("private_subnet_ids", network.private_subnet_ids)
pulumi.export("security_group_id", network.security_group_id)
pulumi.export("kms_key_arn", key.arn)
pulumi.export("alarm_topic_arn", topic.arn)
pulumi.export("metric_namespace", namespace)
pulumi.export("hparams_prefix", cfg.hparams_prefix)
pulumi.export("training_log_group_name", training_logs.name)
pulumi.export("image_id", fleet.image_id)
pulumi.export("start_training_document_name", run_commands.start_document_name)
pulumi.export("stop_training_document_name", run_commands.stop_document_name)
