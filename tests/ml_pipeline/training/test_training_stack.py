"""The training workflow under Pulumi mocks: state machine, roles, schedule, rules, tables, model package
group and code channel, from the pipeline's plan (gpu-training referenced) and from the component alone
(no gpu-training: its own experiments table), plus the settings and the code package."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from ml_pipeline import metric_names
from ml_pipeline.training import settings as training_settings
from ml_pipeline.training.code_package import archive_bytes, code_package
from ml_pipeline.training.component import TrainingWorkflow, TrainingWorkflowArgs, job_prefix
from offline.runner import run_callable
from shared.config_reader import ConfigError, ConfigReader
from shared.context import AwsContext
from tests.botocore_models import service_model

SFN = "aws:sfn/stateMachine:StateMachine"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


class FakeConfig:
    name = "ml-pipeline"

    def __init__(self, values: dict[str, str]):
        self.values = values

    def get(self, key: str):
        return self.values.get(key)


def _settings(**values: str) -> training_settings.TrainingSettings:
    return training_settings.load(ConfigReader(FakeConfig(values)))


def _statements(plan, name: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(plan.one(ROLE_POLICY, name).inputs["policy"])["Statement"]}


def _definition(plan) -> dict:
    return json.loads(plan.one(SFN, "training-state-machine").inputs["definition"])


@pytest.fixture(scope="module")
def alone():
    """The component without gpu-training's table (its own experiments table), given subnets (as with
    trainingNetwork gpu-training) and a deployment workflow to hand over to."""
    def program():
        TrainingWorkflow("training", TrainingWorkflowArgs(
            ctx=AwsContext.lookup(), name_prefix="ml-pipeline-test", settings=_settings(trainingScheduleEnabled="false"),
            image_size=256, shard_prefix="shards/", processed_bucket_name="processed",
            processed_bucket_arn="arn:aws:s3:::processed", artifacts_bucket_name="artifacts",
            artifacts_bucket_arn="arn:aws:s3:::artifacts", catalog_table_name="catalog",
            catalog_table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/catalog", data_key_arn=KEY,
            metadata_key_arn=KEY, alarm_topic_arn="arn:aws:sns:us-east-1:123456789012:alarms", log_retention_days=30,
            subnet_ids=["subnet-0aaa", "subnet-0bbb"], security_group_id="sg-0ccc",
            deployment_state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:deploy"))
    return run_callable(program, "ml-pipeline", "test")


def test_a_standard_state_machine_with_encrypted_logs_and_tracing(pipeline_plan):
    machine = pipeline_plan.one(SFN, "training-state-machine").inputs
    assert machine["type"] == "STANDARD" and machine["tracingConfiguration"] == {"enabled": True}
    logging = machine["loggingConfiguration"]
    assert logging["level"] == "ALL" and logging["includeExecutionData"] is True
    group = pipeline_plan.one("aws:cloudwatch/logGroup:LogGroup", "training-sfn-logs").inputs
    assert group["name"] == "/aws/vendedlogs/states/ml-pipeline-dev-training"
    assert group["name"].startswith("/aws/vendedlogs/states/ml-pipeline-dev-")      # the key policy's prefix
    assert group["kmsKeyId"] == pipeline_plan.outputs["metadata_kms_key_arn"]
    assert logging["logDestination"] == f"arn:aws:logs:us-east-1:123456789012:log-group:{group['name']}:*"
    assert pipeline_plan.outputs["training_state_machine_arn"].endswith(":stateMachine:ml-pipeline-dev-training")


def test_the_deployed_definition_uses_sync_jobs_and_the_stack_resources(pipeline_plan, gpu_plan):
    states = _definition(pipeline_plan)["States"]
    assert {s["Resource"] for n, s in states.items() if n in ("Train", "Tune", "EvaluateFirstModel")} == {
        "arn:aws:states:::sagemaker:createTrainingJob.sync", "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync",
        "arn:aws:states:::sagemaker:createProcessingJob.sync"}
    train = states["Train"]["Parameters"]
    assert train["AlgorithmSpecification"]["TrainingImage"] == \
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
    assert train["RoleArn"] == pipeline_plan.outputs["sagemaker_execution_role_arn"]
    assert train["HyperParameters"]["image_size"] == "512"
    code = pipeline_plan.one("aws:s3/bucketObjectv2:BucketObjectv2", "training-code").inputs
    channel = next(c for c in train["InputDataConfig"] if c["ChannelName"] == "code")
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{code['bucket']}/{code['key']}"
    assert code["bucket"] == pipeline_plan.outputs["artifacts_bucket_name"] and code["serverSideEncryption"] == "aws:kms"
    # Own isolated subnets (trainingNetwork defaults to own) even with gpu-training referenced.
    subnets = {r.id for r in pipeline_plan.of_type("aws:ec2/subnet:Subnet") if r.name.startswith("training-network-")}
    assert set(train["VpcConfig"]["Subnets"]) == subnets and len(subnets) == 2
    assert states["FindProduction"]["Parameters"]["TableName"] == pipeline_plan.outputs["model_versions_table_name"]
    # gpu-training is referenced: runs are recorded in its experiments table (contract 9).
    assert pipeline_plan.outputs["experiments_table_name"] == gpu_plan.outputs["experiments_table_name"]
    keys = _statements(pipeline_plan, "training-sfn-policy")["TableAndTopicKeys"]["Resource"]
    assert keys == [pipeline_plan.outputs["metadata_kms_key_arn"], gpu_plan.outputs["kms_key_arn"]]
    assert states["RecordStart"]["Parameters"]["TableName"] == pipeline_plan.outputs["experiments_table_name"]
    assert not [r for r in pipeline_plan.of_type("aws:dynamodb/table:Table") if r.name == "training-experiments"]
    # An approved version starts the serving deployment workflow, by its ARN (issue 10's hand-over).
    assert states["StartDeployment"]["Parameters"]["StateMachineArn"] == pipeline_plan.outputs["deployment_state_machine_arn"]


def _network(plan, type_token):
    return [r for r in plan.of_type(type_token) if r.name.startswith("training-network-")]


def test_the_isolated_subnets_have_no_route_out(pipeline_plan):
    # The shared network (shared/network.py) with nat_mode none: no internet gateway, NAT, public subnet or route.
    assert pipeline_plan.registrations[next(u for u in pipeline_plan.registrations if u.endswith("::training-network"))][
        "type"] == "mlplatform:network:TrainingNetwork"
    for kind in ("aws:ec2/route:Route", "aws:ec2/internetGateway:InternetGateway", "aws:ec2/natGateway:NatGateway",
                 "aws:ec2/eip:Eip"):
        assert _network(pipeline_plan, kind) == [], kind
    subnets = _network(pipeline_plan, "aws:ec2/subnet:Subnet")
    assert {s.inputs["tags"]["Tier"] for s in subnets} == {"isolated"} and len(subnets) == 2
    assert len({s.inputs["availabilityZone"] for s in subnets}) == 2
    tables = {r.state["id"] for r in _network(pipeline_plan, "aws:ec2/routeTable:RouteTable")}
    endpoint = pipeline_plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "training-network-s3")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway" and set(endpoint.inputs["routeTableIds"]) == tables
    # Only this stack's buckets, only for this account's principals (no AWS-owned agent buckets: no agents here).
    policy = json.loads(endpoint.inputs["policy"])["Statement"]
    assert [s["Sid"] for s in policy] == ["StackBuckets"]
    assert policy[0]["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}
    assert set(policy[0]["Resource"]) == {pipeline_plan.one("aws:s3/bucket:Bucket", b).state["arn"] + tail
                                          for b in ("lake-processed", "lake-artifacts") for tail in ("", "/*")}
    # With VpcConfig, SageMaker's processes on the instances ship the job's logs and metrics through this VPC:
    # without these the jobs have no logs and the metric definitions (the tuning objective) no series.
    subnet_ids = {s.state["id"] for s in subnets}
    jobs_sg = pipeline_plan.one("aws:ec2/securityGroup:SecurityGroup", "training-network-jobs-sg").state["id"]
    endpoints_sg = pipeline_plan.one("aws:ec2/securityGroup:SecurityGroup", "training-network-endpoints-sg").state["id"]
    actions = {"logs": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
               "monitoring": ["cloudwatch:PutMetricData"]}
    for service in ("logs", "monitoring"):
        interface = pipeline_plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", f"training-network-{service}").inputs
        assert interface["serviceName"] == f"com.amazonaws.us-east-1.{service}" and interface["privateDnsEnabled"]
        assert set(interface["subnetIds"]) == subnet_ids and interface["securityGroupIds"] == [endpoints_sg]
        statement, = json.loads(interface["policy"])["Statement"]
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}
        assert statement["Action"] == actions[service]
    assert json.loads(pipeline_plan.one("aws:ec2/vpcEndpoint:VpcEndpoint", "training-network-logs").inputs["policy"])[
        "Statement"][0]["Resource"] == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/*"
    https = pipeline_plan.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "training-network-endpoints-https")
    assert (https.inputs["referencedSecurityGroupId"], https.inputs["fromPort"]) == (jobs_sg, 443)
    # The jobs' group reaches the other instances of its job, S3's prefix list and the endpoints: nothing else.
    egress = {r.name.removeprefix("training-network-jobs-"): r.inputs
              for r in _network(pipeline_plan, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")}
    assert {k: (v["securityGroupId"], v.get("referencedSecurityGroupId") or v.get("prefixListId"), v.get("toPort"))
            for k, v in egress.items()} == {"egress-jobs": (jobs_sg, jobs_sg, None),
                                            "egress-s3": (jobs_sg, endpoint.state["prefixListId"], 443),
                                            "egress-endpoints": (jobs_sg, endpoints_sg, 443)}
    assert not any("cidrIpv4" in v for v in egress.values())


def test_the_isolated_network_logs_its_flows_under_the_stacks_log_prefix(pipeline_plan):
    flow = pipeline_plan.one("aws:ec2/flowLog:FlowLog", "training-network-flow-log").inputs
    group = pipeline_plan.one("aws:cloudwatch/logGroup:LogGroup", "training-network-flow-logs").inputs
    assert flow["trafficType"] == "ALL" and flow["vpcId"] == pipeline_plan.one("aws:ec2/vpc:Vpc", "training-network-vpc").state["id"]
    # The metadata key admits Logs for /mlplatform/<prefix>/* only (ml_pipeline/__main__.py).
    assert group["name"] == "/mlplatform/ml-pipeline-dev/training-vpc-flow-logs"
    assert group["kmsKeyId"] == pipeline_plan.outputs["metadata_kms_key_arn"]


def test_the_workflow_role_passes_only_the_execution_role_only_to_sagemaker(pipeline_plan):
    statements = _statements(pipeline_plan, "training-sfn-policy")
    passing = [s for s in statements.values() if "iam:PassRole" in s["Action"]]
    assert passing == [statements["PassExecutionRoleToSageMaker"]]
    assert passing[0]["Resource"] == [pipeline_plan.outputs["sagemaker_execution_role_arn"]]
    assert passing[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    rules = statements["SyncIntegrationRules"]
    assert rules["Action"] == ["events:DescribeRule", "events:PutRule", "events:PutTargets"]
    assert sorted(r.rsplit("/", 1)[1] for r in rules["Resource"]) == [
        "StepFunctionsGetEventsForSageMakerProcessingJobsRule", "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        "StepFunctionsGetEventsForSageMakerTuningJobsRule"]
    assert statements["TrainingJobs"]["Resource"] == ["arn:aws:sagemaker:us-east-1:123456789012:training-job/mlp-dev-*"]
    assert statements["TuningJobs"]["Resource"] == [
        "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/mlp-dev-*"]
    # .sync tags the job it creates and reads its tags back (aws/aws-cdk#32294: AccessDenied on sagemaker:AddTags
    # for training-job/... without it), on this stack's jobs only.
    for sid in ("TrainingJobs", "TuningJobs", "ProcessingJobs"):
        assert {"sagemaker:AddTags", "sagemaker:ListTags"} <= set(statements[sid]["Action"]), sid
    assert not [s for s in statements.values() if "sagemaker:AddTags" in s["Action"] and s["Resource"] == "*"]
    # The managed rules are Step Functions' own: never defined here.
    assert not [r for r in pipeline_plan.of_type("aws:cloudwatch/eventRule:EventRule")
                if r.inputs["name"].startswith("StepFunctionsGetEvents")]


def test_the_execution_role_reads_shards_snapshots_and_code_and_writes_only_its_output_prefix(pipeline_plan):
    statements = _statements(pipeline_plan, "training-sagemaker-policy")
    processed, artifacts = pipeline_plan.outputs["processed_bucket_name"], pipeline_plan.outputs["artifacts_bucket_name"]
    assert statements["ReadShards"]["Resource"] == [f"arn:aws:s3:::{processed}/shards/*"]
    assert statements["ReadSnapshotsCodeAndModels"]["Resource"] == [
        f"arn:aws:s3:::{artifacts}/{p}*" for p in ("snapshots/", "code/", "training/")]
    writes = [s for s in statements.values() if "s3:PutObject" in s["Action"]]
    assert writes == [statements["WriteOutputPrefix"]]
    assert writes[0]["Resource"] == [f"arn:aws:s3:::{artifacts}/training/*"]
    assert statements["FrameworkImages"]["Resource"] == [
        "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-training"]
    trust = json.loads(pipeline_plan.one("aws:iam/role:Role", "training-sagemaker-role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": ["sagemaker.amazonaws.com"]}


def test_the_schedule_starts_the_state_machine_from_config(pipeline_plan, alone):
    schedule = pipeline_plan.one("aws:scheduler/schedule:Schedule", "training-schedule").inputs
    assert schedule["scheduleExpression"] == "cron(0 3 * * ? *)" and schedule["scheduleExpressionTimezone"] == "UTC"
    assert schedule["state"] == "ENABLED" and schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    target = schedule["target"]
    assert target["arn"] == pipeline_plan.outputs["training_state_machine_arn"] and json.loads(target["input"]) == {
        "tune": False, "trigger": "schedule"}
    role_policy = _statements(pipeline_plan, "training-scheduler-policy")["StartTrainingRun"]
    assert role_policy["Action"] == ["states:StartExecution"] and role_policy["Resource"] == [target["arn"]]
    assert alone.one("aws:scheduler/schedule:Schedule", "training-schedule").inputs["state"] == "DISABLED"


def test_job_state_changes_reach_the_events_function_which_alarms(pipeline_plan):
    rules = {r.name: json.loads(r.inputs["eventPattern"]) for r in pipeline_plan.of_type("aws:cloudwatch/eventRule:EventRule")
             if r.name.startswith("training-")}
    assert rules["training-training-job-events"] == {
        "source": ["aws.sagemaker"], "detail-type": ["SageMaker Training Job State Change"],
        "detail": {"TrainingJobName": [{"prefix": "mlp-dev-"}]}}
    assert rules["training-processing-job-events"]["detail"] == {"ProcessingJobName": [{"prefix": "mlp-dev-"}]}
    function = pipeline_plan.one("aws:lambda/function:Function", "training-job-events").inputs
    assert function["environment"]["variables"] == {"ALARM_TOPIC_ARN": pipeline_plan.outputs["alarm_topic_arn"]}
    assert function["deadLetterConfig"]["targetArn"].endswith("ml-pipeline-dev-training-job-events-dlq")
    permissions = pipeline_plan.of_type("aws:lambda/permission:Permission")
    assert {p.inputs["principal"] for p in permissions if p.name.startswith("training-")} == {"events.amazonaws.com"}


def test_the_model_versions_table_follows_contract_4(pipeline_plan):
    table = pipeline_plan.one("aws:dynamodb/table:Table", "training-versions").inputs
    assert table["name"] == "ml-pipeline-dev-model-versions" and table["hashKey"] == "model_name"
    assert table["rangeKey"] == "version"
    assert {"name": "version", "type": "N"} in table["attributes"]
    index = table["globalSecondaryIndexes"][0]
    assert index["name"] == "status-index" and index["projectionType"] == "ALL"
    assert [k["attributeName"] for k in index["keySchemas"]] == ["model_name", "status"]
    group = pipeline_plan.one("aws:sagemaker/modelPackageGroup:ModelPackageGroup", "training-model-group").inputs
    assert group["modelPackageGroupName"] == pipeline_plan.outputs["model_package_group_name"] == \
        "ml-pipeline-dev-image-classifier"


def test_without_gpu_training_the_pipeline_has_its_own_experiments_table(alone):
    table = alone.one("aws:dynamodb/table:Table", "training-experiments").inputs
    assert table["name"] == "ml-pipeline-test-experiments"
    assert (table["hashKey"], table["rangeKey"]) == ("experiment_id", "run_id")
    assert table["globalSecondaryIndexes"][0]["name"] == "status-started_at-index"
    states = json.loads(alone.one(SFN, "training-state-machine").inputs["definition"])["States"]
    assert states["RecordStart"]["Parameters"]["TableName"] == "ml-pipeline-test-experiments"
    assert states["Approved"]["Choices"][0]["Next"] == "StartDeployment"
    assert states["Train"]["Parameters"]["VpcConfig"] == {"SecurityGroupIds": ["sg-0ccc"],
                                                          "Subnets": ["subnet-0aaa", "subnet-0bbb"]}
    assert not [r for r in alone.resources if r.name.startswith("training-network")]
    handover = _statements(alone, "training-sfn-policy")["HandOver"]
    assert handover["Resource"] == ["arn:aws:states:us-east-1:123456789012:stateMachine:deploy"]


def test_each_function_gets_exactly_the_environment_its_handler_reads(pipeline_plan):
    import re
    from pathlib import Path
    for key in ("validate", "snapshot", "decide", "register", "metrics", "job_events"):
        resource = "training-job-events" if key == "job_events" else f"training-{key}"
        variables = set(pipeline_plan.one("aws:lambda/function:Function", resource).inputs["environment"]["variables"])
        source = (Path(__file__).resolve().parents[3] / "functions" / f"training_{key}" / "handler.py").read_text()
        assert variables == set(re.findall(r'os\.environ\["([A-Z_]+)"\]', source)), key


def test_the_metrics_function_publishes_only_into_the_namespace_the_dashboards_read(pipeline_plan):
    function = pipeline_plan.one("aws:lambda/function:Function", "training-metrics").inputs
    namespace = function["environment"]["variables"]["METRIC_NAMESPACE"]
    assert namespace == metric_names.namespace("ml-pipeline-dev")
    statements = _statements(pipeline_plan, "training-metrics-policy")
    assert statements["TrainingMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": namespace}}
    assert statements["TrainingTimes"]["Resource"] == ["arn:aws:sagemaker:us-east-1:123456789012:training-job/mlp-dev-*"]
    states = _definition(pipeline_plan)["States"]
    assert states["Decide"]["Next"] == "PublishMetrics" and states["PublishMetrics"]["Next"] == "Register"
    assert states["PublishMetrics"]["Parameters"]["FunctionName"] == pipeline_plan.one(
        "aws:lambda/function:Function", "training-metrics").state["arn"]


def test_job_prefix_is_short_lower_case_and_leaves_room_in_tuning_names():
    assert job_prefix("ml-pipeline-dev") == "mlp-dev"
    assert job_prefix("ml-pipeline-Very_Long_Stack-Name") == "mlp-very-long-st"
    assert len(job_prefix("ml-pipeline-" + "x" * 50)) <= 16


# -- settings ---------------------------------------------------------------------------------------
def test_settings_defaults_are_deployable():
    s = _settings()
    assert s.max_wait_s >= s.max_runtime_s and s.spot and s.gpu
    assert s.hyperparameters["architecture"] == "small" and s.model_name == "image-classifier"


@pytest.mark.parametrize("key, value, message", [
    ("trainingMaxWaitSeconds", "600", "must be >= ml-pipeline:trainingMaxRuntimeSeconds"),
    ("tuningMaxParallelJobs", "20", "must be <= ml-pipeline:tuningMaxJobs"),
    ("trainingHyperparameters", '{"lr": "0.1"}', "unknown ['lr']"),
    ("tuningRanges", '{"learning_rate": {"type": "continuous", "min": 0, "max": 1, "scaling": "Logarithmic"}}',
     "Logarithmic scaling needs min > 0"),
    ("tuningRanges", '{"epochs": {"type": "integer", "min": 5, "max": 2}}', "min < max"),
    ("modelName", "Image_Classifier", "ml-pipeline:modelName"),
    ("trainingSchedule", "every day", "ml-pipeline:trainingSchedule"),
    ("trainingNetwork", "public", "ml-pipeline:trainingNetwork"),
    ("approvalAccuracyThreshold", "1.5", "ml-pipeline:approvalAccuracyThreshold"),
])
def test_a_wrong_setting_names_its_key(key, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _settings(**{key: value})


# -- code package ------------------------------------------------------------------------------------
def test_the_code_package_is_deterministic_and_holds_only_modules(tmp_path):
    model = tmp_path / "model"
    (model / "tests").mkdir(parents=True)
    (model / "__pycache__").mkdir()
    (model / "train.py").write_text("print('train')\n")
    (model / "nets.py").write_text("NET = 1\n")
    (model / "tests" / "test_x.py").write_text("")
    (model / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (model / "README.md").write_text("docs")
    first = code_package(model)
    (model / "train.py").touch()                                       # a new mtime changes nothing
    second = code_package(model)
    assert first.sha256 == second.sha256 == hashlib.sha256(first.data).hexdigest()
    assert first.files == ("nets.py", "train.py") and first.has_entry_point
    assert first.key == f"code/{first.sha256[:16]}/sourcedir.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        assert {m.name: (m.mtime, m.uid) for m in tar.getmembers()} == {"nets.py": (0, 0), "train.py": (0, 0)}
    (model / "nets.py").write_text("NET = 2\n")
    assert code_package(model).sha256 != first.sha256


def test_a_missing_model_folder_packs_nothing_and_the_plan_warns(tmp_path, pipeline_plan):
    empty = code_package(tmp_path / "absent")
    assert empty.files == () and not empty.has_entry_point
    assert archive_bytes(tmp_path)[1] == ()
    from ml_pipeline.training.code_package import MODEL_DIR
    if not (MODEL_DIR / "train.py").is_file():
        assert any("has no train.py" in w for w in pipeline_plan.warnings)


def test_runs_that_escape_the_failure_path_alarm(pipeline_plan):
    alarms = {r.name: r.inputs for r in pipeline_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if r.name.startswith("training-")}
    machine = pipeline_plan.outputs["training_state_machine_arn"]
    for metric in ("ExecutionsTimedOut", "ExecutionsAborted"):
        alarm = alarms[f"training-{metric.lower()}"]
        assert alarm["namespace"] == "AWS/States" and alarm["metricName"] == metric
        assert alarm["dimensions"] == {"StateMachineArn": machine}
        assert alarm["alarmActions"] == [pipeline_plan.outputs["alarm_topic_arn"]]
    assert alarms["training-job-events-dlq"]["dimensions"] == {"QueueName": "ml-pipeline-dev-training-job-events-dlq"}
    definition = _definition(pipeline_plan)
    # Four tuning rounds (8 jobs, 2 at a time) at the full Spot wait, the evaluation, an hour of slack.
    assert definition["TimeoutSeconds"] == 4 * 28800 + 3600 + 3600


def test_workflow_resource_settings_are_values_the_apis_accept(pipeline_plan):
    scheduler, sfn = service_model("scheduler"), service_model("stepfunctions")
    schedule = pipeline_plan.one("aws:scheduler/schedule:Schedule", "training-schedule").inputs
    machine = pipeline_plan.one(SFN, "training-state-machine").inputs
    assert schedule["state"] in scheduler.shape_for("ScheduleState").enum
    assert schedule["flexibleTimeWindow"]["mode"] in scheduler.shape_for("FlexibleTimeWindowMode").enum
    retry = schedule["target"]["retryPolicy"]
    shape = scheduler.shape_for("RetryPolicy").members
    assert shape["MaximumEventAgeInSeconds"].metadata["min"] <= retry["maximumEventAgeInSeconds"] <= \
        shape["MaximumEventAgeInSeconds"].metadata["max"]
    assert machine["type"] in sfn.shape_for("StateMachineType").enum
    assert machine["loggingConfiguration"]["level"] in sfn.shape_for("LogLevel").enum
    assert len(machine["name"]) <= sfn.shape_for("Name").metadata["max"]


def test_gpu_training_subnets_need_the_gpu_training_stack(projects):
    from offline import runner
    plan = runner.run(projects["ml-pipeline"], "dev", config_overrides={"ml-pipeline:trainingNetwork": "gpu-training"},
                      raise_errors=False)
    assert "ml-pipeline:trainingNetwork" in plan.error and "ml-pipeline:gpuTrainingStack" in plan.error
