"""Shared components: argument validation without mocks, and ordering that a first deploy depends on."""
import pytest

from shared import iam
from shared.bucket import LifecycleRule, SecureBucketArgs, Transition
from shared.kms import EncryptionKeyArgs
from shared.lambda_function import PythonFunctionArgs
from shared.naming import physical_name
from shared.table import Index, TableArgs
from shared.tagging import StackTags


def test_physical_names_derive_from_project_and_stack_and_respect_limits():
    assert physical_name("ml-pipeline", "dev", "raw") == "ml-pipeline-dev-raw"
    with pytest.raises(ValueError, match="lower-case"):
        physical_name("ml-pipeline", "Dev")
    with pytest.raises(ValueError, match="limit is 63"):
        physical_name("ml-pipeline", "dev", "x" * 60)


def test_stack_tags_validate_classification_and_protect_required_keys():
    tags = StackTags("p", "dev", "team", "cc-1", "internal", extra={"Team": "vision"})
    assert tags.as_dict()["Team"] == "vision" and tags.as_dict()["ManagedBy"] == "pulumi"
    with pytest.raises(ValueError, match="data_classification"):
        StackTags("p", "dev", "team", "cc-1", "secret")
    with pytest.raises(ValueError, match="redefine"):
        StackTags("p", "dev", "team", "cc-1", extra={"Owner": "someone"})


def test_stack_tags_fit_an_s3_object(pipeline_plan):
    # S3 takes at most 10 tags per object (PutObject fails over it) and the stack tags go on the code package.
    code = pipeline_plan.one("aws:s3/bucketObjectv2:BucketObjectv2", "training-code").inputs["tags"]
    assert {"Project", "Stack", "ManagedBy"} <= set(code) and len(code) <= 10
    three = {f"Extra{i}": "x" for i in range(3)}
    assert len(StackTags("p", "dev", "team", "cc-1", extra=three, stack="dev").as_dict()) == 10
    with pytest.raises(ValueError, match="S3 objects"):
        StackTags("p", "dev", "team", "cc-1", extra={**three, "Extra3": "x"}, stack="dev")


def test_policy_builders_refuse_wildcards_and_unexplained_star():
    with pytest.raises(ValueError, match="wildcard"):
        iam.allow(["s3:*"], ["arn:aws:s3:::b"])
    with pytest.raises(ValueError, match="no resources"):
        iam.allow(["s3:GetObject"], [])
    with pytest.raises(ValueError, match="say why"):
        iam.unscoped(["cloudwatch:PutMetricData"], why=" ")
    assert iam.unscoped(["xray:PutTraceSegments"], why="no resource-level permissions")["Resource"] == "*"


def test_bucket_lifecycle_rules_are_checked_against_s3s_rules():
    with pytest.raises(ValueError, match="days >= 30"):
        Transition(10, "STANDARD_IA")
    with pytest.raises(ValueError, match="storage_class"):
        Transition(40, "GLACIER_FLEXIBLE")
    with pytest.raises(ValueError, match="at or after expiration"):
        LifecycleRule("r", transitions=(Transition(90, "GLACIER"),), expiration_days=60)
    with pytest.raises(ValueError, match="unique"):
        SecureBucketArgs("b", None, lifecycle_rules=(LifecycleRule("a"), LifecycleRule("a")))


def test_key_args_know_their_services():
    with pytest.raises(ValueError, match="unknown"):
        EncryptionKeyArgs(ctx=None, description="d", alias="a", services=("lambda",))
    with pytest.raises(ValueError, match="7 to 30"):
        EncryptionKeyArgs(ctx=None, description="d", alias="a", deletion_window_in_days=3)


def test_table_attributes_must_be_exactly_the_keys():
    with pytest.raises(ValueError, match="exactly the key attributes"):
        TableArgs("t", "k", hash_key="pk", attributes={"pk": "S", "extra": "S"})
    args = TableArgs("t", "k", hash_key="pk", range_key="sk", attributes={"pk": "S", "sk": "S", "g": "S"},
                     indexes=(Index("g-index", "g"),))
    assert args.indexes[0].projection_type == "ALL"


def test_function_args_need_exactly_one_failure_path_and_real_source():
    base = dict(ctx=None, function_name="f", source_folder="image_ingest", log_kms_key_arn="k")
    with pytest.raises(ValueError, match="exactly one"):
        PythonFunctionArgs(**base)
    with pytest.raises(ValueError, match="exactly one"):
        PythonFunctionArgs(**base, dead_letter_queue_arn="arn", failures_handled_by_event_source=True)
    with pytest.raises(ValueError, match="memory_mb"):
        PythonFunctionArgs(**base, failures_handled_by_event_source=True, memory_mb=64)
    with pytest.raises(FileNotFoundError):
        PythonFunctionArgs(**{**base, "source_folder": "nope"}, failures_handled_by_event_source=True)


def _urn(plan, type_token, name):
    return plan.one(type_token, name).urn


def test_a_function_waits_for_its_role_policy_and_log_group(pipeline_plan):
    deps = pipeline_plan.registrations[_urn(pipeline_plan, "aws:lambda/function:Function", "ingest-fn")]["dependencies"]
    assert _urn(pipeline_plan, "aws:iam/rolePolicy:RolePolicy", "ingest-fn-policy") in deps
    assert _urn(pipeline_plan, "aws:cloudwatch/logGroup:LogGroup", "ingest-fn-logs") in deps


def test_bucket_policy_waits_for_the_public_access_block_and_lifecycle_for_versioning(gpu_plan):
    reg = gpu_plan.registrations
    policy = reg[_urn(gpu_plan, "aws:s3/bucketPolicy:BucketPolicy", "storage-artifacts-policy")]["dependencies"]
    assert _urn(gpu_plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "storage-artifacts-public-access") in policy
    lifecycle = reg[_urn(gpu_plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                         "storage-artifacts-lifecycle")]["dependencies"]
    assert _urn(gpu_plan, "aws:s3/bucketVersioning:BucketVersioning", "storage-artifacts-versioning") in lifecycle


def test_log_groups_are_encrypted_and_keys_grant_cloudwatch_logs(plans):
    import json
    for plan in plans:
        groups = plan.of_type("aws:cloudwatch/logGroup:LogGroup")
        assert groups and all(g.inputs.get("kmsKeyId") and g.inputs.get("retentionInDays") for g in groups)
        for key_arn in {g.inputs["kmsKeyId"] for g in groups}:
            key = next(k for k in plan.of_type("aws:kms/key:Key") if k.state["arn"] == key_arn)
            sids = {s["Sid"] for s in json.loads(key.inputs["policy"])["Statement"]}
            assert "CloudWatchLogs" in sids, f"{key.name} encrypts log groups but does not grant CloudWatch Logs"
