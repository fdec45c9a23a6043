"""Issue 8 (security review) on the shared components and both plans: encryption headers, TLS on every
SNS/SQS action, key use through services, log-group-scoped Logs grants, one-at-a-time bucket writes."""
import fnmatch
import json

import pulumi_aws as aws
import pytest

from offline.runner import run_callable
from shared import iam
from shared.bucket import LifecycleRule, SecureBucket, SecureBucketArgs, Transition
from shared.context import AwsContext
from shared.kms import EncryptionKeyArgs
from policy import rules
from tests.iam_validators import problems

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
OTHER_KEY = "arn:aws:kms:us-east-1:123456789012:key/99999999-2222-3333-4444-555555555555"
SSE, KEY_ID = "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_C = "s3:x-amz-server-side-encryption-customer-algorithm"


def _statements(text):
    return json.loads(text)["Statement"]


def _as_list(value):
    return value if isinstance(value, list) else [value]


# -- encryption headers ------------------------------------------------------------------------------
# A small evaluator of the condition operators these policies use, following IAM's documented rules
# for a key missing from the request: positive operators (StringEquals, ArnEquals, Bool) do not match,
# negated ones (StringNotEquals, ArnNotEquals) do, Null tests presence. parliament and moto check the
# documents' form (tests/iam_validators.py and the policy pack); this checks what they decide.
def _matches(operator, key, expected, request):
    present = key in request
    if operator == "Null":
        return present != (expected == "true")
    if operator in ("StringEquals", "ArnEquals", "Bool"):
        return present and request[key] in _as_list(expected)
    if operator in ("StringNotEquals", "ArnNotEquals"):
        return not present or request[key] not in _as_list(expected)
    raise AssertionError(f"the evaluator does not know {operator}")


def _denied(policy_text, action, resource, request):
    for st in _statements(policy_text):
        if st["Effect"] != "Deny" or st["Principal"] != "*":
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(st["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(st["Resource"])):
            continue
        if all(_matches(op, k, v, request) for op, kv in st.get("Condition", {}).items() for k, v in kv.items()):
            return True
    return False


TLS = {"aws:SecureTransport": "true"}
KMS_BUCKET_UPLOADS = [
    ({}, False),                                               # default encryption applies
    ({SSE: "aws:kms", KEY_ID: "{key}"}, False),                # this key, named by ARN
    ({SSE: "AES256"}, True),
    ({SSE: "aws:kms:dsse", KEY_ID: "{key}"}, True),
    ({SSE: "aws:kms", KEY_ID: OTHER_KEY}, True),
    ({SSE: "aws:kms"}, True),                                  # would be the AWS managed key aws/s3
    ({SSE_C: "AES256"}, True),                                 # customer-provided key
]
SSE_S3_BUCKET_UPLOADS = [({}, False), ({SSE: "AES256"}, False), ({SSE: "aws:kms", KEY_ID: KEY}, True),
                         ({SSE: "aws:kms"}, True), ({SSE_C: "AES256"}, True)]


def _bucket_policies(plan):
    """(bucket name, its policy text, its default KMS key ARN or None) for every bucket of a plan."""
    out = []
    for bucket in plan.of_type("aws:s3/bucket:Bucket"):
        policy = plan.one("aws:s3/bucketPolicy:BucketPolicy", f"{bucket.name}-policy").inputs["policy"]
        sse = plan.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       f"{bucket.name}-encryption").inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        out.append((bucket.inputs["bucket"], policy, sse.get("kmsMasterKeyId")))
    return out


def test_every_bucket_refuses_uploads_that_ask_for_another_encryption(plans):
    checked = 0
    for plan in plans:
        for name, policy, key in _bucket_policies(plan):
            cases = KMS_BUCKET_UPLOADS if key else SSE_S3_BUCKET_UPLOADS
            for headers, deny in cases:
                request = {**TLS, **{k: v.format(key=key) for k, v in headers.items()}}
                assert _denied(policy, "s3:PutObject", f"arn:aws:s3:::{name}/any/key.jpg", request) is deny, \
                    f"{plan.project}:{name} PutObject with {headers}: expected {'deny' if deny else 'allow'}"
            # Reads are not touched by the encryption statements; plain HTTP is refused for everything.
            assert not _denied(policy, "s3:GetObject", f"arn:aws:s3:::{name}/k", TLS)
            assert _denied(policy, "s3:GetObject", f"arn:aws:s3:::{name}/k", {"aws:SecureTransport": "false"})
            checked += 1
    assert checked == 6  # two gpu-training buckets, four lake buckets


def test_topics_and_queues_refuse_every_action_without_tls(plans):
    denies = []
    for plan in plans:
        for r in plan.of_type("aws:sns/topicPolicy:TopicPolicy") + plan.of_type("aws:sqs/queuePolicy:QueuePolicy"):
            deny = next(s for s in _statements(r.inputs["policy"]) if s.get("Sid") == "DenyInsecureTransport")
            service = "sns" if "sns" in r.type else "sqs"
            assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
            assert deny["Action"] == f"{service}:*", f"{plan.project}:{r.name} denies only {deny['Action']} over HTTP"
            assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            denies.append(r.name)
    assert {"alarms-policy", "ingest-dlq-policy", "ingest-queue-policy"} <= set(denies)
    # Every queue and topic of both stacks has such a policy (one policy per queue or topic).
    queues_and_topics = sum(len(p.of_type("aws:sqs/queue:Queue")) + len(p.of_type("aws:sns/topic:Topic")) for p in plans)
    assert len(denies) == queues_and_topics


# -- keys --------------------------------------------------------------------------------------------
def test_key_use_through_services_carries_kms_via_service_and_lints_clean():
    def program():
        ctx = AwsContext.lookup()
        aws.iam.RolePolicy("p", role="r", policy=iam.document([
            iam.key_use(["kms:Decrypt", "kms:GenerateDataKey"], [KEY], region=ctx.region, via=("sqs", "s3"),
                        sid="DataKey")]))
    plan = run_callable(program)
    policy = plan.one("aws:iam/rolePolicy:RolePolicy", "p")
    assert _statements(policy.inputs["policy"]) == [{
        "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [KEY], "Sid": "DataKey",
        "Condition": {"StringEquals": {"kms:ViaService": ["s3.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"]}}}]
    doc = json.loads(policy.inputs["policy"])
    assert problems(policy.type, "identity", "policy", doc) == []
    assert rules.wildcard_problems(policy.type, "identity", doc) == [] and rules.unscoped_problems(doc) == []
    with pytest.raises(ValueError, match="at least one service"):
        iam.key_use(["kms:Decrypt"], [KEY], region="us-east-1", via=())
    with pytest.raises(ValueError, match="KMS actions only"):
        iam.key_use(["s3:GetObject"], [KEY], region="us-east-1", via=("s3",))


def test_key_args_need_log_group_prefixes_with_logs_and_a_context_with_external_readers():
    base = dict(ctx=None, description="d", alias="a")
    with pytest.raises(ValueError, match="log_group_prefixes"):
        EncryptionKeyArgs(**base, services=("logs",))
    with pytest.raises(ValueError, match="log_group_prefixes"):
        EncryptionKeyArgs(**base, services=("events",), log_group_prefixes=("/x/",))
    with pytest.raises(ValueError, match="not log group name prefixes"):
        EncryptionKeyArgs(**base, services=("logs",), log_group_prefixes=("/aws/lambda/*",))
    with pytest.raises(ValueError, match="external_decrypt_context"):
        EncryptionKeyArgs(**base, external_decrypt_role_arns=("arn:aws:iam::123456789012:role/r",))


def test_cloudwatch_logs_may_use_a_key_only_for_the_stacks_own_log_groups(plans):
    expected = {
        "gpu-training": ["/mlplatform/gpu-training-dev/*"],
        "ml-pipeline": ["/aws/lambda/ml-pipeline-dev-*", "/mlplatform/ml-pipeline-dev/*",
                        "/aws/vendedlogs/states/ml-pipeline-dev-*"],
    }
    for plan in plans:
        groups = plan.of_type("aws:cloudwatch/logGroup:LogGroup")
        for key in plan.of_type("aws:kms/key:Key"):
            logs = [s for s in _statements(key.inputs["policy"]) if s["Sid"] == "CloudWatchLogs"]
            if not logs:
                continue
            patterns = logs[0]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
            prefix = "arn:aws:logs:us-east-1:123456789012:log-group:"
            assert [p.removeprefix(prefix) for p in patterns] == expected[plan.project]
            # Every log group the stack encrypts with this key falls under one of the patterns.
            mine = [g for g in groups if g.inputs["kmsKeyId"] == key.state["arn"]]
            assert mine
            for group in mine:
                assert any(fnmatch.fnmatchcase(prefix + group.inputs["name"], p) for p in patterns), group.inputs["name"]


# -- bucket sub-resources one after another -----------------------------------------------------------
CHAIN = ("ownership", "public-access", "policy", "versioning", "encryption", "lifecycle", "eventbridge",
         "access-logs")


def _chain_of(plan, bucket_name):
    """The bucket's sub-resources in CHAIN order, those it has."""
    by_name = {r.name: r for r in plan.resources}
    return [by_name[f"{bucket_name}-{part}"] for part in CHAIN if f"{bucket_name}-{part}" in by_name]


def test_a_buckets_sub_resources_are_written_one_after_another(plans):
    chains = 0
    for plan in plans:
        for bucket in plan.of_type("aws:s3/bucket:Bucket"):
            parts = _chain_of(plan, bucket.name)
            assert len(parts) >= 6, [p.name for p in parts]
            for before, after in zip(parts, parts[1:]):
                deps = plan.registrations[after.urn]["dependencies"]
                assert before.urn in deps, f"{plan.project}: {after.name} does not wait for {before.name}"
            chains += 1
    assert chains == 6


def test_the_chain_covers_notifications_and_logging_of_a_bucket_alone():
    plan = run_callable(lambda: SecureBucket("b", SecureBucketArgs(
        bucket_name="my-bucket", kms_key_arn=KEY, eventbridge_notifications=True, access_log_bucket="logs")))
    parts = _chain_of(plan, "b")
    assert [p.name for p in parts] == [f"b-{part}" for part in CHAIN]
    for before, after in zip(parts, parts[1:]):
        assert before.urn in plan.registrations[after.urn]["dependencies"]


def test_a_lifecycle_rule_keeps_objects_30_days_in_standard_ia():
    with pytest.raises(ValueError, match="30 days or more after the IA transition at 30"):
        LifecycleRule("r", transitions=(Transition(30, "STANDARD_IA"), Transition(59, "GLACIER_IR")))
    LifecycleRule("r", transitions=(Transition(30, "STANDARD_IA"), Transition(60, "GLACIER_IR")))


def test_the_endpoints_data_capture_lands_in_a_bucket_that_accepts_its_encryption(pipeline_plan):
    """SageMaker writes captured requests with aws:kms and the capture config's KmsKeyId (the data key's
    ARN): the bucket it writes to must accept that, which the SSE-S3 access-log bucket would refuse."""
    machine = pipeline_plan.one("aws:sfn/stateMachine:StateMachine", "serving-workflow").inputs["definition"]
    config = next(s["Parameters"] for s in json.loads(machine)["States"].values()
                  if s.get("Resource", "").endswith("sagemaker:createEndpointConfig"))
    capture = config["DataCaptureConfig"]
    bucket = capture["DestinationS3Uri"].removeprefix("s3://").split("/")[0]
    policy, key = next((p, k) for name, p, k in _bucket_policies(pipeline_plan) if name == bucket)
    assert key == capture["KmsKeyId"]
    request = {**TLS, SSE: "aws:kms", KEY_ID: capture["KmsKeyId"]}
    key_path = f"arn:aws:s3:::{bucket}/data-capture/ep/champion/2026/11/29/10/x.jsonl"
    assert not _denied(policy, "s3:PutObject", key_path, request)
    # The access-log bucket would have refused it (what the capture path was before).
    logs = pipeline_plan.outputs["logs_bucket_name"]
    logs_policy = next(p for name, p, _ in _bucket_policies(pipeline_plan) if name == logs)
    assert _denied(logs_policy, "s3:PutObject", f"arn:aws:s3:::{logs}/data-capture/x.jsonl", request)
