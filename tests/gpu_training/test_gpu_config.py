"""Config checks that run at config load, before any Output exists (issues 7 and 8)."""
from __future__ import annotations

import pytest

from offline import runner
from shared.config_reader import check_bucket_name, check_default_bucket_name, longest_region

BASE = {"gpu-training:owner": "ml", "gpu-training:costCenter": "cc-1"}


def _load(stack: str, **config: str):
    from gpu_training import config as gpu_config
    plan = runner.run_callable(gpu_config.load, "gpu-training", stack, raise_errors=False,
                               config={**BASE, **{f"gpu-training:{k}": v for k, v in config.items()}})
    return plan.error


def test_the_longest_region_comes_from_botocore_and_is_at_least_14_characters():
    assert len(longest_region()) >= len("ap-southeast-7")


def test_default_bucket_names_are_checked_for_the_longest_account_and_region():
    fits = "ml-model-artifacts-" + "s" * 15 + "-{account}-{region}"
    assert check_default_bucket_name(fits) is None
    assert "S3 allows 63" in check_default_bucket_name(fits.replace("s" * 15, "s" * 16))


def test_a_long_stack_name_fails_at_config_load_naming_the_key():
    error = _load("a-rather-long-stack")
    assert error.startswith("ConfigError") and "gpu-training:trainingDataBucketName" in error
    assert "S3 allows 63" in error
    assert _load("a-rather-long-stack", trainingDataBucketName="td-{account}", artifactsBucketName="ar-{account}") is None


@pytest.mark.parametrize("name", ["192.168.1.1", "xn--bucket", "bucket-s3alias", "a..b", "{stack}-x"])
def test_bucket_name_rules(name):
    assert check_bucket_name(name)
