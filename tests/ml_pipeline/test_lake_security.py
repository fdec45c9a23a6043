"""Issue 8 on the data lake: the cross-stack reader grant and the raw lifecycle's Standard-IA rule."""
import json

import pytest

from offline import plan as offline_plan
from offline import runner
from shared import iam
from shared.config_reader import ConfigError, ConfigReader
from shared.contracts import GPU_TRAINING_EXPORTS
from ml_pipeline.lake import settings as lake_settings
from tests.conftest import GPU_STACK_REF

ACCOUNT = "123456789012"


def _statements(text):
    return {s["Sid"]: s for s in json.loads(text)["Statement"]}


def test_the_fleet_role_reads_only_shards_of_the_processed_bucket_from_this_account(pipeline_plan, gpu_plan):
    role = gpu_plan.outputs["instance_role_arn"]
    bucket = f"arn:aws:s3:::{pipeline_plan.outputs['processed_bucket_name']}"
    s = _statements(pipeline_plan.one("aws:s3/bucketPolicy:BucketPolicy", "lake-processed-policy").inputs["policy"])
    assert s["ExternalShardReaders"] == {
        "Sid": "ExternalShardReaders", "Effect": "Allow", "Principal": {"AWS": [role]}, "Action": "s3:GetObject",
        "Resource": f"{bucket}/shards/*", "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}}
    assert s["ExternalShardListing"] == {
        "Sid": "ExternalShardListing", "Effect": "Allow", "Principal": {"AWS": [role]}, "Action": "s3:ListBucket",
        "Resource": bucket, "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT},
                                          "StringLike": {"s3:prefix": "shards/*"}}}
    assert [sid for sid, st in s.items() if st["Effect"] == "Allow"] == ["ExternalShardReaders", "ExternalShardListing"]


def test_the_fleet_role_decrypts_only_through_s3_for_the_processed_bucket(pipeline_plan, gpu_plan):
    s = _statements(pipeline_plan.one("aws:kms/key:Key", "data-key-key").inputs["policy"])
    assert s["ExternalReaders"]["Principal"] == {"AWS": [gpu_plan.outputs["instance_role_arn"]]}
    assert s["ExternalReaders"]["Action"] == "kms:Decrypt"
    # With bucket keys on, S3 asks KMS with the bucket's ARN as encryption context.
    assert s["ExternalReaders"]["Condition"] == {"StringEquals": {
        "kms:ViaService": "s3.us-east-1.amazonaws.com", "aws:PrincipalAccount": ACCOUNT,
        "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{pipeline_plan.outputs['processed_bucket_name']}"}}


@pytest.mark.parametrize("arn", [
    f"arn:aws:iam::{ACCOUNT}:role/gpu-training-dev-instance",
    f"arn:aws:iam::{ACCOUNT}:role/team/ml/instance-role_1+=,.@-",
])
def test_a_role_of_this_account_is_accepted(arn):
    assert iam.check_account_role_arn(arn, "aws", ACCOUNT, "src") == arn


@pytest.mark.parametrize("arn", [
    "arn:aws:iam::999999999999:role/gpu",                     # another account
    f"arn:aws-cn:iam::{ACCOUNT}:role/gpu",                     # another partition
    f"arn:aws:iam::{ACCOUNT}:user/gpu",                        # not a role
    f"arn:aws:iam::{ACCOUNT}:root",                            # the whole account
    f"arn:aws:iam::{ACCOUNT}:role/*",                          # a wildcard
    "*",
    f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ec2fleet.amazonaws.com/AWSServiceRoleForEC2Fleet",
    f"arn:aws:sts::{ACCOUNT}:assumed-role/gpu/i-0123",
    ["arn:aws:iam::123456789012:role/gpu"],                    # not a string
    "",
])
def test_anything_else_is_refused_naming_the_source(arn):
    with pytest.raises(ValueError, match="gpuTrainingStack.*is not an IAM role of account 123456789012"):
        iam.check_account_role_arn(arn, "aws", ACCOUNT, "config ml-pipeline:gpuTrainingStack")


def test_a_foreign_role_from_the_stack_reference_stops_the_program_and_the_plan_says_why(projects):
    outputs = {key: "unused" for key in GPU_TRAINING_EXPORTS}
    outputs["instance_role_arn"] = "arn:aws:iam::999999999999:role/someone-elses"
    plan = runner.run(projects["ml-pipeline"], "dev", config_overrides={"ml-pipeline:gpuTrainingStack": GPU_STACK_REF},
                      stack_outputs={"gpu-training/dev": outputs}, raise_errors=False)
    assert plan.error and "ml-pipeline:gpuTrainingStack" in plan.error
    assert "'arn:aws:iam::999999999999:role/someone-elses' is not an IAM role of account 123456789012" in plan.error
    assert "NOT PLANNED" in offline_plan.render_text(plan) and "someone-elses" in offline_plan.render_text(plan)
    assert not any(r.name == "data-key-key" for r in plan.resources), "the key must not be created with that grant"


class _Config:
    name = "ml-pipeline"

    def __init__(self, values):
        self.values = values

    def get(self, key):
        return self.values.get(key)


@pytest.mark.parametrize("ia, glacier, ok", [("30", "59", False), ("60", "89", False), ("30", "60", True),
                                             ("45", "120", True)])
def test_raw_glacier_days_leave_30_days_in_standard_ia(ia, glacier, ok):
    config = _Config({"rawInfrequentAccessDays": ia, "rawGlacierDays": glacier})
    if ok:
        assert lake_settings.load(ConfigReader(config), "ml-pipeline-test").raw_glacier_days == int(glacier)
        return
    with pytest.raises(ConfigError) as error:
        lake_settings.load(ConfigReader(config), "ml-pipeline-test")
    assert "ml-pipeline:rawGlacierDays" in str(error.value) and "ml-pipeline:rawInfrequentAccessDays" in str(error.value)
    assert "+ 30" in str(error.value)
