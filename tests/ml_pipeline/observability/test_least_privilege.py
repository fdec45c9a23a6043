"""Least privilege proven against the code (issue 11).

The AWS calls each function and instance script makes while its own tests run against moto are
recorded (tests/iam_recorder.py) and mapped to IAM actions on resources. For each role below:
every recorded action must be allowed by the role's policy in the plan on the resource used (test
names bound to the plan's names), with the KMS actions the encrypted resource implies; and every
action the policy grants must be called by some code path, or be on the role's commented allow-list
(what the runtime uses on the code's behalf). ``UNPROVEN`` lists grants no code in this repository
calls yet: a ratchet, so a new unused grant fails, and so does one that became proven.

A new function: add its RoleSpec (its test paths, plan, policy resource and name bindings).
Print the tables with ``pytest -s`` or ``python -m tests.iam_recorder``.
"""
from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import pytest

import full_program
from tests import iam_recorder
from tests.ml_pipeline.serving import iam_mappings  # noqa: F401  (maps the serving functions' calls)

# Used on the code's behalf by the runtime, never by the code itself.
LAMBDA_RUNTIME = {
    "logs:CreateLogStream": "the Lambda runtime writes the function's logs",
    "logs:PutLogEvents": "the Lambda runtime writes the function's logs",
    "xray:PutTraceSegments": "active tracing: the runtime sends segments",
    "xray:PutTelemetryRecords": "active tracing: the runtime sends telemetry",
}
SQS_EVENT_SOURCE = {
    "sqs:ReceiveMessage": "the SQS event source mapping polls with the function's role",
    "sqs:DeleteMessage": "the event source mapping deletes processed messages",
    "sqs:ChangeMessageVisibility": "the event source mapping returns failed messages",
    "sqs:GetQueueAttributes": "the event source mapping reads the queue's attributes",
}
ASYNC_DLQ = {"sqs:SendMessage": "Lambda sends failed asynchronous invocations to the function's DLQ"}
CLOUDWATCH_AGENT = {
    "logs:CreateLogStream": "the CloudWatch agent ships the instance's logs",
    "logs:DescribeLogStreams": "the CloudWatch agent ships the instance's logs",
    "logs:PutLogEvents": "the CloudWatch agent ships the instance's logs",
}
# The SSM agent (Session Manager and Run Command over ssmmessages), not code of this repository.
SSM_AGENT = {
    "ssm:UpdateInstanceInformation": "the SSM agent registers the instance",
    **{f"ssmmessages:{a}": "the SSM agent's Session Manager and Run Command channels"
       for a in ("CreateControlChannel", "CreateDataChannel", "OpenControlChannel", "OpenDataChannel")},
}


@dataclass(frozen=True)
class RoleSpec:
    name: str
    code: str  # what the recorder attributes calls to
    tests: tuple[str, ...]  # test paths whose runs exercise the code
    plan: str  # fixture holding the role
    policy: str  # its RolePolicy resource name
    # Prefixes of the resources (ARNs) and condition values the tests use -> the plan's; the longest
    # matching prefix is rewritten (so a test's bucket root can map to the plan's key prefix).
    bindings: Callable[[object], dict[str, str]]
    # Key of each encrypted resource (resource ARN prefix -> key ARN); from the plan unless given.
    keys: Callable[[object], dict[str, str]] = field(default=lambda plan: plan_keys(plan))
    runtime: dict[str, str] = field(default_factory=dict)
    unproven: dict[str, str] = field(default_factory=dict)


def plan_keys(plan) -> dict[str, str]:
    """Encrypted buckets, tables and queues of a plan and their keys."""
    keys = {}
    for r in plan.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"):
        rule = r.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        if rule.get("kmsMasterKeyId"):
            keys[f"arn:aws:s3:::{r.inputs['bucket']}/"] = rule["kmsMasterKeyId"]
    for r in plan.of_type("aws:dynamodb/table:Table"):
        sse = r.inputs.get("serverSideEncryption") or {}
        if sse.get("kmsKeyArn"):
            keys[r.state["arn"]] = sse["kmsKeyArn"]
    for r in plan.of_type("aws:sqs/queue:Queue"):
        if r.inputs.get("kmsMasterKeyId"):
            keys[r.state["arn"]] = r.inputs["kmsMasterKeyId"]
    return keys


TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/"


def _s3(plan, role: str) -> str:
    return f"arn:aws:s3:::{plan.outputs[f'{role}_bucket_name']}"


ROLES = [
    RoleSpec(
        name="image_ingest function", code="functions/image_ingest", tests=("tests/functions/",),
        plan="pipeline_plan", policy="ingest-fn-policy",
        # The tests upload at the raw bucket's root; the stack ingests under rawPrefix (incoming/).
        bindings=lambda p: {"arn:aws:s3:::raw-images/quarantine/": f"{_s3(p, 'raw')}/quarantine/",
                            "arn:aws:s3:::raw-images/": f"{_s3(p, 'raw')}/incoming/",
                            "arn:aws:s3:::processed-images/": f"{_s3(p, 'processed')}/",
                            f"{TABLE_ARN}image-catalog": f"{TABLE_ARN}{p.outputs['catalog_table_name']}",
                            "MLPlatform/ml-pipeline-test": "MLPlatform/ml-pipeline-dev"},
        runtime={**LAMBDA_RUNTIME, **SQS_EVENT_SOURCE,
                 "kms:Decrypt": "the event source mapping reads the data-key-encrypted queue"},
        unproven={"s3:GetObjectTagging": "the function reads the version the event names; an event without "
                                         "version-id (bucket versioning off) takes the unversioned path, which no "
                                         "test exercises",
                  # No call is a ListObjects: with this grant S3 answers a deleted source 404 instead of 403, so
                  # the function can tell a deleted upload from a policy error (issue 8).
                  "s3:ListBucket": "makes a missing key answer 404 (NoSuchKey) rather than 403"}),
    # -- serving (issue 10): the inference functions and the deployment's autoscaling function -------------
    RoleSpec(
        name="serving_predict function", code="functions/serving_predict",
        tests=("tests/ml_pipeline/serving/",), plan="pipeline_plan", policy="inference-predict-policy",
        bindings=lambda p: _serving_names(p),
        keys=lambda p: {**plan_keys(p), _stream(p): p.outputs["data_kms_key_arn"]},
        runtime=LAMBDA_RUNTIME),
    RoleSpec(
        name="serving_consumer function", code="functions/serving_consumer",
        tests=("tests/ml_pipeline/serving/",), plan="pipeline_plan", policy="inference-consumer-policy",
        bindings=lambda p: _serving_names(p),
        runtime={**LAMBDA_RUNTIME, **{f"kinesis:{a}": "the Kinesis event source mapping reads the stream with "
                                      "the function's role" for a in ("DescribeStream", "DescribeStreamSummary",
                                                                      "GetRecords", "GetShardIterator", "ListShards")},
                 "kms:Decrypt": "the event source mapping reads the data-key-encrypted stream; sending to the "
                                "encrypted on-failure queue decrypts too",
                 "sqs:SendMessage": "the event source mapping sends what it gives up on to the on-failure queue"}),
    RoleSpec(
        name="serving_manage function", code="functions/serving_manage",
        tests=("tests/ml_pipeline/serving/",), plan="pipeline_plan", policy="inference-manage-policy",
        bindings=lambda p: _serving_names(p), runtime=LAMBDA_RUNTIME),
    RoleSpec(
        name="serving_autoscaling function", code="functions/serving_autoscaling",
        tests=("tests/ml_pipeline/serving/",), plan="pipeline_plan", policy="serving-autoscaling-policy",
        bindings=lambda p: _serving_names(p),
        runtime={**LAMBDA_RUNTIME,
                 # Application Auto Scaling authorizes what scaling will do as the registering caller.
                 "sagemaker:UpdateEndpointWeightsAndCapacities": "Application Auto Scaling checks the caller may "
                                                                 "change the variant's instance count",
                 "iam:CreateServiceLinkedRole": "Application Auto Scaling creates its SageMaker service-linked "
                                                "role on an account's first registration, as the caller",
                 **{f"cloudwatch:{a}": "target tracking creates and deletes its alarms as the caller"
                    for a in ("DescribeAlarms", "PutMetricAlarm", "DeleteAlarms")}}),
    RoleSpec(
        name="drift_monitor function", code="functions/drift_monitor",
        tests=("tests/ml_pipeline/observability/test_drift_monitor.py",
               "tests/ml_pipeline/observability/test_drift_edges.py"),
        plan="full_plan", policy="observability-drift-fn-policy",
        bindings=lambda p: {f"arn:aws:s3:::mlp-test-{role}": f"arn:aws:s3:::{bucket}"
                            for role, bucket in full_program.BUCKETS.items()},
        # Every bucket it reads is on the data key (the test program's buckets are names, not resources).
        keys=lambda p: {f"arn:aws:s3:::{b}/": full_program.DATA_KEY for b in full_program.BUCKETS.values()},
        runtime={**LAMBDA_RUNTIME, **ASYNC_DLQ,
                 "kms:GenerateDataKey": "the DLQ is on the data key: Lambda encrypts failed invocations"}),
    RoleSpec(
        name="gpu-training instances", code="gpu_training/instance", tests=("tests/gpu_training/",),
        plan="gpu_plan", policy="instance-policy",
        bindings=lambda p: {"arn:aws:s3:::mlplatform-test-artifacts/": f"arn:aws:s3:::{p.outputs['artifacts_bucket_name']}/",
                            "arn:aws:s3:::ml-model-artifacts-test/": f"arn:aws:s3:::{p.outputs['artifacts_bucket_name']}/",
                            f"{TABLE_ARN}gpu-training-test-experiments": f"{TABLE_ARN}{p.outputs['experiments_table_name']}",
                            "arn:aws:ssm:us-east-1:123456789012:parameter/ml/hparams/test":
                                f"arn:aws:ssm:us-east-1:123456789012:parameter{p.outputs['hparams_prefix']}",
                            "MLPlatform/GPUTraining/test": p.outputs["metric_namespace"]},
        runtime={**CLOUDWATCH_AGENT, **SSM_AGENT},
        unproven={a: "granted for the training workload on the fleet; no code in this repository calls it yet" for a in (
            "s3:ListBucket", "s3:GetBucketLocation", "s3:AbortMultipartUpload", "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable", "dynamodb:GetItem",
            "dynamodb:Query", "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")}),
    # -- the training workflow's functions (issue 9): their tests and the workflow runs in moto ---------------
    *[RoleSpec(name=f"training_{key} function", code=f"functions/training_{key}", tests=("tests/ml_pipeline/training/",),
               plan="pipeline_plan", policy=f"training-{key.replace('_', '-')}-policy",
               bindings=lambda p: _training_bindings(p), runtime={**LAMBDA_RUNTIME, **runtime})
      for key, runtime in (
          ("validate", {}), ("snapshot", {}), ("decide", {}), ("register", {}), ("metrics", {}),
          ("job_events", {**ASYNC_DLQ,
                          "kms:GenerateDataKey": "SNS encrypts the published message with the topic's key for the "
                                                 "publisher; Lambda encrypts failed invocations into the data-key DLQ",
                          "kms:Decrypt": "publishing to a KMS-encrypted topic needs Decrypt too (SNS developer guide)"}))],
]

def _training_bindings(plan) -> dict[str, str]:
    """tests/ml_pipeline/training/training_support.py's names -> the dev plan's."""
    sm, out = "arn:aws:sagemaker:us-east-1:123456789012:", plan.outputs
    return {"arn:aws:s3:::processed-bucket/": f"{_s3(plan, 'processed')}/",
            "arn:aws:s3:::processed-bucket": _s3(plan, "processed"),
            "arn:aws:s3:::artifacts-bucket/": f"{_s3(plan, 'artifacts')}/",
            f"{TABLE_ARN}catalog": f"{TABLE_ARN}{out['catalog_table_name']}",
            f"{TABLE_ARN}model-versions": f"{TABLE_ARN}{out['model_versions_table_name']}",
            f"{sm}training-job/mlp-test": f"{sm}training-job/mlp-dev",
            # moto names a tuning job's best training job FakeTrainingJobName; SageMaker names it after the
            # tuning job (<tuning job name>-NNN-<hash>), which starts with the job prefix.
            f"{sm}training-job/faketrainingjobname": f"{sm}training-job/mlp-dev-tune-",
            f"{sm}model-package/mlp-test-image-classifier/": f"{sm}model-package/{out['model_package_group_name']}/",
            "arn:aws:sns:us-east-1:123456789012:alarms": out["alarm_topic_arn"],
            "MLPlatform/ml-pipeline-test": "MLPlatform/ml-pipeline-dev"}


def _stream(plan) -> str:
    return f"arn:aws:kinesis:us-east-1:123456789012:stream/{plan.outputs['predict_stream_name']}"


def _serving_names(plan) -> dict[str, str]:
    """The serving tests' names (tests/ml_pipeline/serving/fakes.py, test_inference_api.py) -> the plan's."""
    sagemaker = "arn:aws:sagemaker:us-east-1:123456789012:"
    return {f"{TABLE_ARN}predictions": f"{TABLE_ARN}{plan.outputs['predictions_table_name']}",
            f"{TABLE_ARN}ml-pipeline-test-ab-tests": f"{TABLE_ARN}{plan.outputs['ab_tests_table_name']}",
            f"{TABLE_ARN}ml-pipeline-test-model-versions": f"{TABLE_ARN}{plan.outputs['model_versions_table_name']}",
            "arn:aws:kinesis:us-east-1:123456789012:stream/requests": _stream(plan),
            f"{sagemaker}endpoint/ml-pipeline-test-image-classifier": f"{sagemaker}endpoint/{plan.outputs['endpoint_name']}",
            # The tests' endpoint configs (c1, c2, ...) stand for the workflow's <prefix>-v<version>-<suffix>.
            f"{sagemaker}endpoint-config/": f"{sagemaker}endpoint-config/ml-pipeline-dev-v1-",
            "arn:aws:states:us-east-1:123456789012:stateMachine:deploy": plan.outputs["deployment_state_machine_arn"]}


READS = {"GetObject", "HeadObject", "GetItem", "BatchGetItem", "Query", "Scan", "ReceiveMessage"}
MULTIPART = {"CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "UploadPartCopy"}


def implied_kms(call: iam_recorder.Call, resource: str, action: str, keys: dict[str, str]) -> list[tuple[str, str]]:
    """KMS actions AWS performs with the caller's permissions on a customer-key-encrypted resource:
    S3 SSE-KMS reads Decrypt, writes GenerateDataKey (multipart also Decrypt); DynamoDB calls KMS via the
    service for the caller (the AWS-managed key's policy lists Decrypt, GenerateDataKey, DescribeKey)."""
    key = next((k for prefix, k in keys.items() if resource.startswith(prefix)), None)
    if key is None or action.startswith(("s3:GetObjectTagging", "s3:PutObjectTagging", "s3:GetObjectVersionTagging",
                                         "s3:ListBucket")):
        return []
    found = []
    reads = call.operation in READS or action in ("s3:GetObject", "s3:GetObjectVersion")
    if reads:
        found.append(("kms:Decrypt", key))
    else:
        found.append(("kms:GenerateDataKey", key))
        if call.operation in MULTIPART:
            found.append(("kms:Decrypt", key))
    if call.service == "dynamodb":
        found.append(("kms:DescribeKey", key))
    return found


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: dict, context: dict) -> tuple[bool, list[str]]:
    unchecked = []
    for operator, pairs in condition.items():
        for key, wanted in pairs.items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            if key not in context:
                unchecked.append(f"{operator} {key}")
                continue
            if operator in ("StringEquals", "ArnEquals") and context[key] not in wanted:
                return False, unchecked
            if operator in ("StringLike", "ArnLike") and not any(_matches(w, context[key]) for w in wanted):
                return False, unchecked
    return True, unchecked


def allowed_by(statements: list[dict], action: str, resource: str, context: dict) -> list[str]:
    """Sids (or indexes) of the Allow statements that grant ``action`` on ``resource`` in ``context``."""
    sids = []
    for n, st in enumerate(statements):
        if st["Effect"] != "Allow":
            continue
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if not any(_matches(a, action) for a in actions):
            continue
        if not any(_matches(r, resource) for r in resources):
            continue
        holds, _ = _condition_holds(st.get("Condition", {}), context)
        if holds:
            sids.append(st.get("Sid", f"#{n}"))
    return sids


def _bind(value: str, bindings: dict[str, str]) -> str:
    for test_prefix in sorted(bindings, key=len, reverse=True):
        if value.startswith(test_prefix):
            return bindings[test_prefix] + value[len(test_prefix):]
    return value


@dataclass
class Verdict:
    rows: list[tuple[str, str, str, str, int]]  # action, a resource, granted by, called from, calls
    denied: list[str]
    unused: set[str]
    granted: set[str]


def verdict(role: RoleSpec, plan, calls: list[iam_recorder.Call]) -> Verdict:
    statements = json.loads(plan.one("aws:iam/rolePolicy:RolePolicy", role.policy).inputs["policy"])["Statement"]
    bindings, keys = role.bindings(plan), role.keys(plan)
    used, denied, rows = set(), [], {}
    for call in calls:
        for action, resource, context in iam_recorder.authorizations(call):
            resource = _bind(resource, bindings)
            context = {k: _bind(v, bindings) for k, v in context.items()}
            needed = [(action, resource, context)] + [(a, k, {}) for a, k in implied_kms(call, resource, action, keys)]
            for act, res, ctx in needed:
                sids = allowed_by(statements, act, res, ctx)
                used.add(act)
                via = f"{call.operation}" + ("" if act == action else " (implied)")
                key = (act, ",".join(sids) or "DENIED")
                if key not in rows:
                    rows[key] = [act, res, key[1], f"{via} in {call.test.split('::')[-1]}", 0]
                rows[key][4] += 1
                if not sids:
                    denied.append(f"{act} on {res} ({call.operation} from {call.test})")
    granted = set()
    for st in statements:
        granted |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    unused = granted - used - set(role.runtime)
    return Verdict(sorted(tuple(r) for r in rows.values()), sorted(set(denied)), unused, granted)


def print_table(role: RoleSpec, v: Verdict) -> None:
    print(f"\n== {role.name} ({role.plan}: {role.policy}) ==")
    width = max(len(r[0]) for r in v.rows) if v.rows else 10
    for action, resource, sids, via, count in v.rows:
        print(f"  {action:<{width}}  {sids:<22}  {count} call(s), e.g. {resource}\n"
              f"  {'':<{width}}  {'':<22}  by {via}")
    for action in sorted(role.runtime.keys() & v.granted):
        print(f"  {action:<{width}}  ALLOW-LIST              {role.runtime[action]}")
    for action in sorted(v.unused):
        print(f"  {action:<{width}}  {'UNPROVEN' if action in role.unproven else 'UNUSED':<22}  "
              f"{role.unproven.get(action, 'granted, but no code path calls it')}")


@pytest.fixture(scope="module")
def recorded_calls() -> dict[str, list[iam_recorder.Call]]:
    found = defaultdict(list)
    for role in ROLES:
        found[role.name] = [c for c in iam_recorder.RECORDING.for_code(role.code)
                            if any(c.test.startswith(t) for t in role.tests)]
    return found


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_each_role_grants_what_its_code_calls_and_nothing_more(role, recorded_calls, request):
    calls = recorded_calls[role.name]
    if not calls:
        pytest.skip(f"no recorded calls of {role.code}: run its tests ({', '.join(role.tests)}) in the same "
                    "session, before this module (the full suite does)")
    plan = request.getfixturevalue(role.plan)
    v = verdict(role, plan, calls)
    print_table(role, v)
    assert v.denied == []
    assert v.unused == set(role.unproven), "grants no code path calls (remove them, or allow-list them with why)"


def _call(service, operation, params, code="functions/drift_monitor"):
    return iam_recorder.Call(code, service, operation, params, "us-east-1", "t::test")


def test_the_mapping_knows_the_exceptions_to_prefix_plus_operation():
    a = iam_recorder.authorizations
    assert a(_call("s3", "HeadObject", {"Bucket": "b", "Key": "k", "VersionId": "v"})) == [
        ("s3:GetObjectVersion", "arn:aws:s3:::b/k", {})]
    assert a(_call("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "p/"})) == [
        ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "p/"})]
    assert a(_call("s3", "CopyObject", {"Bucket": "b", "Key": "q/k", "CopySource": {"Bucket": "b", "Key": "i/k",
                                                                                     "VersionId": "3"}})) == [
        ("s3:GetObjectVersion", "arn:aws:s3:::b/i/k", {}), ("s3:PutObject", "arn:aws:s3:::b/q/k", {}),
        ("s3:GetObjectVersionTagging", "arn:aws:s3:::b/i/k", {}), ("s3:PutObjectTagging", "arn:aws:s3:::b/q/k", {})]
    assert a(_call("cloudwatch", "PutMetricData", {"Namespace": "N", "MetricData": []})) == [
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "N"})]
    assert a(_call("dynamodb", "Query", {"TableName": "t", "IndexName": "status-index"})) == [
        ("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/status-index", {})]


def test_a_missing_grant_and_an_unused_one_are_both_reported(full_plan):
    role = next(r for r in ROLES if r.name == "drift_monitor function")
    calls = [_call("s3", "GetObject", {"Bucket": "mlp-test-logs", "Key": "data-capture/ml-pipeline-test-endpoint/x"}),
             _call("s3", "DeleteObject", {"Bucket": "mlp-test-logs", "Key": "data-capture/x"})]
    v = verdict(role, full_plan, calls)
    assert v.denied == [f"s3:DeleteObject on arn:aws:s3:::{full_program.BUCKETS['logs']}/data-capture/x "
                        "(DeleteObject from t::test)"]
    assert "dynamodb:Query" in v.unused and "s3:GetObject" not in v.unused
