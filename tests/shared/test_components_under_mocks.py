"""Each shared component built alone under mocks: the resources it creates and their inputs."""
import json

import pulumi

from offline.runner import run_callable
from shared.alarm_topic import AlarmTopic, AlarmTopicArgs
from shared.bucket import LifecycleRule, SecureBucket, SecureBucketArgs, Transition
from shared.context import AwsContext
from shared.kms import EncryptionKey, EncryptionKeyArgs
from shared.lambda_function import PythonFunction, PythonFunctionArgs
from shared.logs import encrypted_log_group
from shared.table import Index, Table, TableArgs
from shared.tagging import StackTags, register_stack_tags

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"


def _types(plan):
    return sorted(r.type.split(":")[-1] for r in plan.resources)


def test_secure_bucket_creates_exactly_its_parts():
    def program():
        SecureBucket("b", SecureBucketArgs(
            bucket_name="my-bucket", kms_key_arn=KEY, eventbridge_notifications=True, access_log_bucket="logs",
            lifecycle_rules=(LifecycleRule("cold", prefix="x/", transitions=(Transition(30, "GLACIER"),),
                                           expiration_days=90),)))
    plan = run_callable(program)
    assert _types(plan) == sorted(["Bucket", "BucketOwnershipControls", "BucketPublicAccessBlock", "BucketVersioning",
                                   "BucketServerSideEncryptionConfiguration", "BucketPolicy",
                                   "BucketLifecycleConfiguration", "BucketNotification", "BucketLogging"])
    assert all(r.parent.endswith("mlplatform:storage:SecureBucket::b") for r in plan.resources)
    rules = plan.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "b-lifecycle").inputs["rules"]
    assert [r["id"] for r in rules] == ["cold", "bucket-hygiene"]
    assert rules[0]["filter"] == {"prefix": "x/"} and rules[0]["expiration"] == {"days": 90}
    assert plan.one("aws:s3/bucketLogging:BucketLogging", "b-access-logs").inputs["targetPrefix"] == "s3/my-bucket/"


def test_a_plain_bucket_has_no_notification_or_logging():
    plan = run_callable(lambda: SecureBucket("b", SecureBucketArgs(bucket_name="n", kms_key_arn=None)))
    assert "BucketNotification" not in _types(plan) and "BucketLogging" not in _types(plan)
    rule = plan.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                    "b-encryption").inputs["rules"][0]
    assert rule == {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}, "bucketKeyEnabled": False}


def test_encryption_key_policy_names_only_the_requested_services():
    def program():
        ctx = AwsContext.lookup()
        EncryptionKey("k", EncryptionKeyArgs(ctx=ctx, description="d", alias="team-key", services=("logs",),
                                             log_group_prefixes=("/aws/lambda/team-", "/team/")))
    plan = run_callable(program)
    key = plan.one("aws:kms/key:Key", "k-key").inputs
    assert key["enableKeyRotation"] is True and key["deletionWindowInDays"] == 30
    statements = json.loads(key["policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["EnableIamPolicies", "CloudWatchLogs", "CloudWatchLogsDescribe"]
    assert statements[0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert statements[1]["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    # Only the stack's log groups, not every log group of the account (issue 8).
    assert statements[1]["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/team-*",
        "arn:aws:logs:us-east-1:123456789012:log-group:/team/*"]}}
    assert plan.one("aws:kms/alias:Alias", "k-alias").inputs["name"] == "alias/team-key"


def test_table_is_on_demand_with_recovery_encryption_and_ttl():
    plan = run_callable(lambda: Table("t", TableArgs(
        table_name="things", kms_key_arn=KEY, hash_key="pk", attributes={"pk": "S", "g": "N"},
        indexes=(Index("g-index", "g", projection_type="KEYS_ONLY"),), deletion_protection=True, ttl_attribute="exp")))
    table = plan.one("aws:dynamodb/table:Table", "t").inputs
    assert table["billingMode"] == "PAY_PER_REQUEST" and table["deletionProtectionEnabled"] is True
    assert table["ttl"] == {"attributeName": "exp", "enabled": True}
    assert table["globalSecondaryIndexes"][0]["projectionType"] == "KEYS_ONLY"
    assert table["attributes"] == [{"name": "g", "type": "N"}, {"name": "pk", "type": "S"}]


def test_alarm_topic_subscriptions_are_keyed_by_address():
    def program():
        AlarmTopic("a", AlarmTopicArgs(ctx=AwsContext.lookup(), topic_name="alarms", kms_key_arn=KEY,
                                       email_endpoints=("b@example.com", "a@example.com")))
    plan = run_callable(program)
    subs = {r.name: r.inputs for r in plan.of_type("aws:sns/topicSubscription:TopicSubscription")}
    assert set(subs) == {"a-a@example.com", "a-b@example.com"}
    policy = json.loads(plan.one("aws:sns/topicPolicy:TopicPolicy", "a-policy").inputs["policy"])
    assert policy["Statement"][0]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


def test_python_function_with_a_dead_letter_queue():
    def program():
        PythonFunction("f", PythonFunctionArgs(
            ctx=AwsContext.lookup(), function_name="team-fn", source_folder="image_ingest", log_kms_key_arn=KEY,
            dead_letter_queue_arn=DLQ, statements=({"Effect": "Allow", "Action": ["s3:GetObject"],
                                                    "Resource": ["arn:aws:s3:::b/*"], "Sid": "Read"},)))
    plan = run_callable(program)
    fn = plan.one("aws:lambda/function:Function", "f").inputs
    assert fn["deadLetterConfig"] == {"targetArn": DLQ} and fn["runtime"] == "python3.12"
    assert fn["tracingConfig"] == {"mode": "Active"} and fn["loggingConfig"]["logGroup"] == "/aws/lambda/team-fn"
    sids = [s["Sid"] for s in json.loads(plan.one("aws:iam/rolePolicy:RolePolicy", "f-policy").inputs["policy"])["Statement"]]
    assert sids == ["OwnLogGroup", "XRay", "Read", "DeadLetter"]
    trust = json.loads(plan.one("aws:iam/role:Role", "f-role").inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": ["lambda.amazonaws.com"]}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_stack_tags_reach_children_of_components_and_plain_resources():
    def program():
        register_stack_tags(StackTags("proj", "test", "team", "cc-1"))
        encrypted_log_group("lg", log_group_name="/x", kms_key_arn=KEY, retention_days=7)
        SecureBucket("b", SecureBucketArgs(bucket_name="n", kms_key_arn=KEY))
    plan = run_callable(program)
    tagged = [r for r in plan.resources if "tags" in r.inputs]
    assert {r.type.split(":")[-1] for r in tagged} == {"LogGroup", "Bucket"}
    assert all(r.inputs["tags"]["Project"] == "proj" and r.inputs["tags"]["CostCenter"] == "cc-1" for r in tagged)


def test_a_component_registers_its_outputs_and_parents_every_child():
    plan = run_callable(lambda: pulumi.export("arn", Table("t", TableArgs(
        table_name="x", kms_key_arn=KEY, hash_key="pk", attributes={"pk": "S"})).arn))
    assert plan.outputs["arn"] == "arn:aws:dynamodb:us-east-1:123456789012:table/x"
    components = [u for u, r in plan.registrations.items() if not r["custom"]]
    assert len(components) == 1 and plan.resources[0].parent == components[0]
