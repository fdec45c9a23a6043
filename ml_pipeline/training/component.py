"""The training workflow: a Standard state machine from the day's shards to an evaluated, registered version.

validate data -> snapshot -> train (or tune) -> evaluate against production -> decide -> register ->
hand over; every task retries transient errors and falls into one failure path that records the run
and notifies the alarm topic. Started by an EventBridge Scheduler schedule or by hand; SageMaker job
state changes of this stack are logged and failures alarmed by a small function.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from ml_pipeline import metric_names
from ml_pipeline.training import definition, policies
from ml_pipeline.training.alarms import training_alarms
from ml_pipeline.training.code_package import ENTRY_POINT, MODEL_DIR, code_package
from ml_pipeline.training.settings import TrainingSettings
from shared import iam
from shared.context import AwsContext
from shared.lambda_function import PythonFunction, PythonFunctionArgs
from shared.logs import encrypted_log_group
from shared.network import EndpointAccess, NetworkArgs, TrainingNetwork, Workload
from shared.table import EXPERIMENTS, Index, KeySchema, Table, TableArgs

FUNCTION_TIMEOUT_S = 60
SCHEDULE_INPUT = json.dumps({"tune": False, "trigger": definition.TRIGGER_SCHEDULE})
# trainingNetwork own: two AZs of the shared network without any route out (issue 9). With network isolation
# the containers have no network; SageMaker's own processes on the job's instances use the VpcConfig's VPC
# for the data (S3 gateway endpoint) and for the job's logs and metrics (the metric definitions' series,
# the tuning objective): interface endpoints, billed per hour and AZ (the plan's cost lists them).
JOBS_VPC_CIDR = ipaddress.IPv4Network("10.30.0.0/22")
JOBS_AZ_COUNT = 2
JOBS = Workload(key="jobs", description="SageMaker jobs: members of one job reach each other; HTTPS to the endpoints",
                peers_why="distributed training between the instances of a job", members="the jobs",
                endpoints_why="the jobs' logs and metrics", reads_agent_buckets=False)
# What the SageMaker agent on a job's instances calls besides S3 (with the execution role): job logs and
# metrics. PutMetricData has no resource-level permissions; SageMaker's log groups are /aws/sagemaker/<kind>Jobs.
JOBS_ENDPOINTS = ("logs", "monitoring")


def job_prefix(name_prefix: str) -> str:
    """A short, lower-case prefix every job name of this stack starts with (IAM and event rules match
    on it); short enough that a tuning job name (32 characters) keeps room for a run hash."""
    short = re.sub(r"^ml-pipeline-", "mlp-", name_prefix.lower())
    return re.sub(r"[^a-z0-9-]", "-", short)[:16].rstrip("-")

# Contract 4: the model-versions table the training workflow writes and serving and drift read. "The
# production version of a model" is a query on status-index (model_name, status = production).
MODEL_VERSIONS = KeySchema(hash_key="model_name", range_key="version",
                           attributes={"model_name": "S", "version": "N", "status": "S"},
                           indexes=(Index(name="status-index", hash_key="model_name", range_key="status"),))


@dataclass(frozen=True)
class TrainingWorkflowArgs:
    """``experiments_table_*`` and ``subnet_ids``/``security_group_id`` come from gpu-training when that
    stack is referenced; when absent the workflow creates its own table and isolated subnets."""

    ctx: AwsContext
    name_prefix: str
    settings: TrainingSettings
    image_size: int
    shard_prefix: str
    processed_bucket_name: pulumi.Input[str]
    processed_bucket_arn: pulumi.Input[str]
    artifacts_bucket_name: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    catalog_table_name: pulumi.Input[str]
    catalog_table_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    metadata_key_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    log_retention_days: int
    deletion_protection: bool = False
    experiments_table_name: Optional[pulumi.Input[str]] = None
    experiments_key_arn: Optional[pulumi.Input[str]] = None
    subnet_ids: Optional[pulumi.Input[Sequence[str]]] = None
    security_group_id: Optional[pulumi.Input[str]] = None
    deployment_state_machine_arn: Optional[pulumi.Input[str]] = None

    def __post_init__(self) -> None:
        if (self.experiments_table_name is None) != (self.experiments_key_arn is None):
            raise ValueError("TrainingWorkflowArgs: experiments_table_name and experiments_key_arn go together")
        if (self.subnet_ids is None) != (self.security_group_id is None):
            raise ValueError("TrainingWorkflowArgs: subnet_ids and security_group_id go together")


class TrainingWorkflow(pulumi.ComponentResource):
    state_machine: aws.sfn.StateMachine
    versions_table: Table
    experiments_table_name: pulumi.Output[str]
    model_package_group_name: pulumi.Output[str]
    execution_role_arn: pulumi.Output[str]
    code_url: pulumi.Output[str]

    def __init__(self, name: str, args: TrainingWorkflowArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:training:TrainingWorkflow", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s, ctx, prefix = args.settings, args.ctx, args.name_prefix
        jobs = job_prefix(prefix)

        # Contract 4: one item per model version; "the production version" is a query on status-index.
        self.versions_table = Table(f"{name}-versions", TableArgs(
            table_name=f"{prefix}-model-versions", kms_key_arn=args.metadata_key_arn,
            **MODEL_VERSIONS.table_args(), deletion_protection=args.deletion_protection), opts=child)
        if args.experiments_table_name is None:
            # Contract 9: the same schema as gpu-training's experiments table.
            experiments = Table(f"{name}-experiments", TableArgs(
                table_name=f"{prefix}-experiments", kms_key_arn=args.metadata_key_arn,
                **EXPERIMENTS.table_args(), deletion_protection=args.deletion_protection), opts=child)
            self.experiments_table_name, experiments_key = experiments.name, args.metadata_key_arn
        else:
            self.experiments_table_name, experiments_key = pulumi.Output.from_input(args.experiments_table_name), \
                args.experiments_key_arn
        experiments_arn = self.experiments_table_name.apply(lambda n: ctx.arn("dynamodb", f"table/{n}"))

        group = aws.sagemaker.ModelPackageGroup(
            # Group names are unique per account and region: the stack's prefix keeps dev and prod apart.
            f"{name}-model-group", model_package_group_name=f"{prefix}-{s.model_name}",
            model_package_group_description=f"{s.model_name}: versions registered by {prefix}'s training workflow",
            opts=child)
        self.model_package_group_name = group.model_package_group_name

        accelerator = "gpu" if s.gpu else "cpu"
        training_image = aws.sagemaker.get_prebuilt_ecr_image_output(
            repository_name="pytorch-training", image_tag=f"{s.framework_version}-{accelerator}-{s.python_version}",
            opts=pulumi.InvokeOutputOptions(parent=self))
        evaluation_image = aws.sagemaker.get_prebuilt_ecr_image_output(
            repository_name="pytorch-training", image_tag=f"{s.framework_version}-cpu-{s.python_version}",
            opts=pulumi.InvokeOutputOptions(parent=self))
        inference_image = aws.sagemaker.get_prebuilt_ecr_image_output(
            repository_name="pytorch-inference", image_tag=f"{s.framework_version}-cpu-{s.python_version}",
            opts=pulumi.InvokeOutputOptions(parent=self))
        repository_arns = [pulumi.Output.all(ctx.partition, ctx.region, training_image.registry_id).apply(
            lambda v: f"arn:{v[0]}:ecr:{v[1]}:{v[2]}:repository/pytorch-training")]

        package = code_package()
        if not package.has_entry_point:
            pulumi.log.warn(f"{MODEL_DIR} has no {ENTRY_POINT}: the code channel holds {len(package.files)} file(s) "
                            "and training jobs will fail until model/ is merged", resource=self)
        code = aws.s3.BucketObjectv2(
            f"{name}-code", bucket=args.artifacts_bucket_name, key=package.key, content_base64=package.base64,
            content_type="application/gzip", server_side_encryption="aws:kms", kms_key_id=args.data_key_arn,
            bucket_key_enabled=True, opts=child)
        self.code_url = pulumi.Output.concat("s3://", code.bucket, "/", code.key)

        if args.subnet_ids is None:
            network = TrainingNetwork(f"{name}-network", NetworkArgs(
                ctx=ctx, name_prefix=f"{prefix}-training", vpc_cidr=JOBS_VPC_CIDR, nat_mode="none",
                az_count=JOBS_AZ_COUNT, interface_endpoints=JOBS_ENDPOINTS, endpoint_access={
                    "logs": EndpointAccess(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams",
                                            "logs:PutLogEvents"], [ctx.arn("logs", "log-group:/aws/sagemaker/*")]),
                    "monitoring": EndpointAccess(["cloudwatch:PutMetricData"])},
                kms_key_arn=args.metadata_key_arn, log_retention_days=args.log_retention_days,
                bucket_arns=(args.processed_bucket_arn, args.artifacts_bucket_arn), workload=JOBS,
                # Under /mlplatform/<prefix>/: the metadata key's Logs grant covers it.
                flow_log_group_name=f"/mlplatform/{prefix}/training-vpc-flow-logs"), opts=child)
            subnet_ids, security_group_id = network.private_subnet_ids, network.security_group_id
        else:
            subnet_ids, security_group_id = args.subnet_ids, args.security_group_id

        execution_role = aws.iam.Role(
            f"{name}-sagemaker-role", description=f"{prefix}: SageMaker training and evaluation jobs",
            assume_role_policy=iam.service_trust_policy("sagemaker.amazonaws.com", source_account=ctx.account_id),
            opts=child)
        aws.iam.RolePolicy(f"{name}-sagemaker-policy", role=execution_role.id, policy=iam.document(
            policies.execution_statements(policies.ExecutionAccess(
                ctx=ctx, processed_bucket_arn=args.processed_bucket_arn, shard_prefix=args.shard_prefix,
                artifacts_bucket_arn=args.artifacts_bucket_arn, data_key_arn=args.data_key_arn,
                image_repository_arns=repository_arns))), opts=child)
        self.execution_role_arn = execution_role.arn

        # The serving container every version is registered with, and the deployment serves it in.
        self.inference_image_uri = inference_image.registry_path
        functions = self._functions(name, args, jobs, inference_image.registry_path, experiments_arn)
        self.functions: dict[str, PythonFunction] = functions  # by role: validate, snapshot, decide, register, metrics
        self.snapshot_prefix = policies.SNAPSHOT_PREFIX  # in the artifacts bucket: <prefix><id>/snapshot.json

        log_group = encrypted_log_group(
            f"{name}-sfn-logs", log_group_name=f"/aws/vendedlogs/states/{prefix}-training",
            kms_key_arn=args.metadata_key_arn, retention_days=args.log_retention_days, opts=child)
        workflow_role = aws.iam.Role(
            f"{name}-sfn-role", description=f"{prefix}: the training state machine",
            assume_role_policy=iam.service_trust_policy("states.amazonaws.com", source_account=ctx.account_id),
            opts=child)
        workflow_policy = aws.iam.RolePolicy(f"{name}-sfn-policy", role=workflow_role.id, policy=iam.document(
            policies.workflow_statements(policies.WorkflowAccess(
                ctx=ctx, job_prefix=jobs, function_arns=[f.arn for f in functions.values()],
                experiments_table_arn=experiments_arn, experiments_key_arn=experiments_key,
                versions_table_arn=self.versions_table.arn, metadata_key_arn=args.metadata_key_arn,
                alarm_topic_arn=args.alarm_topic_arn, execution_role_arn=execution_role.arn,
                deployment_state_machine_arn=args.deployment_state_machine_arn))), opts=child)

        spec = pulumi.Output.all(
            validate=functions["validate"].arn, snapshot=functions["snapshot"].arn, decide=functions["decide"].arn,
            register=functions["register"].arn, metrics=functions["metrics"].arn, experiments=self.experiments_table_name,
            versions=self.versions_table.name, topic=args.alarm_topic_arn, role=execution_role.arn,
            training_image=training_image.registry_path, evaluation_image=evaluation_image.registry_path,
            code_url=self.code_url, artifacts=args.artifacts_bucket_name, key=args.data_key_arn,
            subnets=subnet_ids, sg=security_group_id, deployment=args.deployment_state_machine_arn,
        ).apply(lambda v: workflow_spec(s, args.image_size, v))
        self.state_machine = aws.sfn.StateMachine(
            f"{name}-state-machine", name=f"{prefix}-training", type="STANDARD", role_arn=workflow_role.arn,
            definition=spec.apply(lambda sp: json.dumps(definition.build(sp), indent=1)),
            logging_configuration=aws.sfn.StateMachineLoggingConfigurationArgs(
                level="ALL", include_execution_data=True, log_destination=pulumi.Output.concat(log_group.arn, ":*")),
            tracing_configuration=aws.sfn.StateMachineTracingConfigurationArgs(enabled=True),
            # Step Functions checks the role's permissions when the state machine is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[workflow_policy]))

        self._schedule(name, args)
        events_dlq = self._job_events(name, args, jobs)
        training_alarms(self, name, prefix, self.state_machine.arn, events_dlq.name, args.alarm_topic_arn)
        self.register_outputs({"state_machine_arn": self.state_machine.arn,
                               "model_versions_table_name": self.versions_table.name,
                               "experiments_table_name": self.experiments_table_name,
                               "model_package_group_name": self.model_package_group_name,
                               "execution_role_arn": self.execution_role_arn, "code_url": self.code_url})

    # -- the workflow's functions -----------------------------------------------------------------
    def _functions(self, name: str, args: TrainingWorkflowArgs, jobs: str, inference_image: pulumi.Output[str],
                   experiments_arn: pulumi.Output[str]) -> dict[str, PythonFunction]:
        s, prefix = args.settings, args.name_prefix
        artifacts = args.artifacts_bucket_arn
        group_name = f"{prefix}-{s.model_name}"

        def fn(key: str, description: str, environment: dict, statements: list[dict]) -> PythonFunction:
            return PythonFunction(f"{name}-{key.replace('_', '-')}", PythonFunctionArgs(
                ctx=args.ctx, function_name=f"{prefix}-training-{key.replace('_', '-')}",
                source_folder=f"training_{key}", description=description, log_kms_key_arn=args.metadata_key_arn,
                statements=statements, environment=environment, timeout_s=FUNCTION_TIMEOUT_S, memory_mb=256,
                log_retention_days=args.log_retention_days,
                # Invoked synchronously by the state machine, whose Retry and Catch own the failures.
                failures_handled_by_event_source=True), opts=pulumi.ResourceOptions(parent=self))

        return {
            "validate": fn("validate", "Training data check from the catalog's daily statistics", {
                "CATALOG_TABLE": args.catalog_table_name, "WINDOW_DAYS": str(s.window_days),
                "MIN_IMAGES": str(s.min_images), "MIN_CLASS_SHARE": str(s.min_class_share),
                "MAX_QUARANTINE_RATE": str(s.max_quarantine_rate)}, [
                iam.allow(["dynamodb:BatchGetItem"], [args.catalog_table_arn], sid="DailyStatistics"),
                iam.allow(["kms:Decrypt", "kms:DescribeKey"], [args.metadata_key_arn], sid="CatalogKey")]),
            "snapshot": fn("snapshot", "Dataset snapshot: shard list split by hash, manifests, job names", {
                "PROCESSED_BUCKET": args.processed_bucket_name, "SHARD_PREFIX": args.shard_prefix,
                "ARTIFACTS_BUCKET": args.artifacts_bucket_name, "SNAPSHOT_PREFIX": policies.SNAPSHOT_PREFIX,
                "OUTPUT_PREFIX": policies.OUTPUT_PREFIX, "JOB_PREFIX": jobs,
                "VALIDATION_SHARE": str(s.validation_share), "TEST_SHARE": str(s.test_share)}, [
                iam.allow(["s3:ListBucket"], [args.processed_bucket_arn], sid="ListShards",
                          conditions={"StringLike": {"s3:prefix": [f"{args.shard_prefix}*"]}}),
                iam.allow(["s3:PutObject"], [iam.objects_in(artifacts, policies.SNAPSHOT_PREFIX)], sid="WriteSnapshots"),
                iam.allow(["kms:GenerateDataKey"], [args.data_key_arn], sid="DataKey")]),
            "decide": fn("decide", "Approve or reject a candidate from its evaluation report", {
                "APPROVAL_THRESHOLD": str(s.approval_threshold), "APPROVAL_TOLERANCE": str(s.approval_tolerance)}, [
                iam.allow(["s3:GetObject"], [iam.objects_in(artifacts, f"{policies.OUTPUT_PREFIX}evaluations/")],
                          sid="ReadEvaluations"),
                iam.allow(["kms:Decrypt"], [args.data_key_arn], sid="DataKey")]),
            "register": fn("register", "Model package and model-version item of an evaluated candidate", {
                "VERSIONS_TABLE": self.versions_table.name, "MODEL_NAME": s.model_name,
                "MODEL_PACKAGE_GROUP": group_name, "INFERENCE_IMAGE": inference_image}, [
                iam.allow(["sagemaker:DescribeTrainingJob"],
                          [policies._sagemaker(args.ctx, "training-job", jobs)], sid="TrainingMetrics"),
                iam.allow(["sagemaker:CreateModelPackage"],
                          [args.ctx.arn("sagemaker", f"model-package/{group_name}/*"),
                           args.ctx.arn("sagemaker", f"model-package-group/{group_name}")], sid="RegisterPackage"),
                iam.allow(["dynamodb:PutItem", "dynamodb:Query"], [self.versions_table.arn], sid="ModelVersions"),
                iam.allow(["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [args.metadata_key_arn],
                          sid="VersionsKey")]),
            "metrics": fn("metrics", "Publish a run's accuracy, training time and Spot saving", {
                "MODEL_NAME": s.model_name, "METRIC_NAMESPACE": metric_names.namespace(prefix)}, [
                iam.allow(["sagemaker:DescribeTrainingJob"],
                          [policies._sagemaker(args.ctx, "training-job", jobs)], sid="TrainingTimes"),
                iam.unscoped(["cloudwatch:PutMetricData"], sid="TrainingMetrics",
                             why="PutMetricData has no resource-level permissions",
                             conditions={"StringEquals": {"cloudwatch:namespace": metric_names.namespace(prefix)}})]),
        }

    def _schedule(self, name: str, args: TrainingWorkflowArgs) -> None:
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-scheduler-role", description=f"{args.name_prefix}: starts training runs",
                            assume_role_policy=iam.service_trust_policy("scheduler.amazonaws.com",
                                                                        source_account=args.ctx.account_id),
                            opts=child)
        policy = aws.iam.RolePolicy(f"{name}-scheduler-policy", role=role.id, policy=iam.document([
            iam.allow(["states:StartExecution"], [self.state_machine.arn], sid="StartTrainingRun")]), opts=child)
        aws.scheduler.Schedule(
            f"{name}-schedule", name=f"{args.name_prefix}-training",
            description=f"Scheduled training run (input: {SCHEDULE_INPUT})",
            schedule_expression=s.schedule, schedule_expression_timezone=s.schedule_timezone,
            state="ENABLED" if s.schedule_enabled else "DISABLED",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=self.state_machine.arn, role_arn=role.arn, input=SCHEDULE_INPUT,
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(maximum_event_age_in_seconds=3600,
                                                                         maximum_retry_attempts=3)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))

    def _job_events(self, name: str, args: TrainingWorkflowArgs, jobs: str) -> aws.sqs.Queue:
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix
        # Failed job-event deliveries: on the data key like every queue of the stack, TLS only.
        dlq = aws.sqs.Queue(f"{name}-job-events-dlq", name=f"{prefix}-training-job-events-dlq",
                            kms_master_key_id=args.data_key_arn, kms_data_key_reuse_period_seconds=300,
                            message_retention_seconds=14 * 24 * 3600, opts=child)
        aws.sqs.QueuePolicy(f"{name}-job-events-dlq-policy", queue_url=dlq.url,
                            policy=iam.document([iam.deny_insecure_transport("sqs", dlq.arn)]), opts=child)
        function = PythonFunction(f"{name}-job-events", PythonFunctionArgs(
            ctx=args.ctx, function_name=f"{prefix}-training-job-events", source_folder="training_job_events",
            description="Log SageMaker job state changes of this stack; alarm on failures",
            log_kms_key_arn=args.metadata_key_arn, environment={"ALARM_TOPIC_ARN": args.alarm_topic_arn},
            statements=[iam.allow(["sns:Publish"], [args.alarm_topic_arn], sid="AlarmTopic"),
                        iam.allow(["kms:Decrypt", "kms:GenerateDataKey"], [args.metadata_key_arn], sid="TopicKey"),
                        # Lambda sends failed async invocations to the dead-letter queue under the function's role.
                        iam.allow(["kms:GenerateDataKey"], [args.data_key_arn], sid="DeadLetterKey")],
            timeout_s=30, memory_mb=128, log_retention_days=args.log_retention_days,
            dead_letter_queue_arn=dlq.arn), opts=child)
        for kind, detail_type, field in (("training", "SageMaker Training Job State Change", "TrainingJobName"),
                                         ("processing", "SageMaker Processing Job State Change", "ProcessingJobName")):
            rule = aws.cloudwatch.EventRule(
                f"{name}-{kind}-job-events", name=f"{prefix}-{kind}-job-state",
                description=f"State changes of this stack's SageMaker {kind} jobs",
                event_pattern=json.dumps(job_event_pattern(detail_type, field, jobs)), opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{kind}-job-events", rule=rule.name, arn=function.arn,
                                       retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                                           maximum_event_age_in_seconds=3600, maximum_retry_attempts=10),
                                       opts=child)
            aws.lambda_.Permission(f"{name}-{kind}-job-events", action="lambda:InvokeFunction",
                                   function=function.name, principal="events.amazonaws.com", source_arn=rule.arn,
                                   opts=child)
        return dlq


def job_event_pattern(detail_type: str, name_field: str, prefix: str) -> dict:
    # Job names keep their case in events; ours are lower-case from the prefix on.
    return {"source": ["aws.sagemaker"], "detail-type": [detail_type],
            "detail": {name_field: [{"prefix": f"{prefix}-"}]}}


def workflow_spec(s: TrainingSettings, image_size: int, v: dict) -> definition.WorkflowSpec:
    hyperparameters = {"image_size": str(image_size), **s.hyperparameters}
    return definition.WorkflowSpec(
        model_name=s.model_name, validate_function_arn=v["validate"], snapshot_function_arn=v["snapshot"],
        decide_function_arn=v["decide"], register_function_arn=v["register"], metrics_function_arn=v["metrics"],
        experiments_table=v["experiments"],
        versions_table=v["versions"], alarm_topic_arn=v["topic"], execution_role_arn=v["role"],
        training_image=v["training_image"], evaluation_image=v["evaluation_image"], code_url=v["code_url"],
        models_url=f"s3://{v['artifacts']}/{policies.OUTPUT_PREFIX}models/", data_key_arn=v["key"],
        subnet_ids=tuple(v["subnets"]), security_group_ids=(v["sg"],), instance_type=s.instance_type,
        instance_count=s.instance_count, volume_gb=s.volume_gb, max_runtime_s=s.max_runtime_s,
        max_wait_s=s.max_wait_s, spot=s.spot, hyperparameters=dict(sorted(hyperparameters.items())),
        tuning_ranges=s.tuning_ranges, tuning_max_jobs=s.tuning_max_jobs,
        tuning_max_parallel_jobs=s.tuning_max_parallel_jobs, evaluation_instance_type=s.evaluation_instance_type,
        evaluation_max_runtime_s=s.evaluation_max_runtime_s, deployment_state_machine_arn=v["deployment"])
