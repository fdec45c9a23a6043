"""Session fixtures: each program's offline plan is built once and shared by every test.

gpu-training runs first; its real mocked exports answer the pipeline's StackReference, so the
contract between the two stacks is exercised on every run.
"""
from __future__ import annotations

import asyncio
import os

import pytest
from moto import mock_aws

from offline import runner

# moto and boto3 must never find real credentials or reach AWS from a test: the one place they are set.
REGION = "us-east-1"
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
                   "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
for _name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_name, None)
asyncio.set_event_loop(asyncio.new_event_loop())

# The form users write (<org>/gpu-training/<stack>); the mocks answer it from the planned gpu-training
# stack's outputs, keyed "<project>/<stack>" as the offline plan keys them, whatever the organization.
GPU_STACK_REF = "my-org/gpu-training/dev"


@pytest.fixture
def moto():
    """A fresh, empty moto account for one test (the fake credentials above are already in place)."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def projects() -> dict[str, runner.Project]:
    return runner.projects()


@pytest.fixture(scope="session")
def gpu_plan(projects) -> runner.Plan:
    return runner.run(projects["gpu-training"], "dev")


@pytest.fixture(scope="session")
def pipeline_plan(projects, gpu_plan) -> runner.Plan:
    return runner.run(projects["ml-pipeline"], "dev",
                      config_overrides={"ml-pipeline:gpuTrainingStack": GPU_STACK_REF},
                      stack_outputs={"gpu-training/dev": gpu_plan.outputs})


@pytest.fixture(scope="session")
def pipeline_plan_as_filed(projects) -> runner.Plan:
    """ml-pipeline from its dev stack file alone (no gpuTrainingStack), as `make plan` shows it."""
    return runner.run(projects["ml-pipeline"], "dev")


@pytest.fixture(scope="session")
def prod_plans(projects) -> tuple[runner.Plan, runner.Plan]:
    """Both prod stack files, planned once (gpu-training first, its outputs answer the pipeline's reference)."""
    gpu = runner.run(projects["gpu-training"], "prod")
    return gpu, runner.run(projects["ml-pipeline"], "prod", stack_outputs={"gpu-training/prod": gpu.outputs})


@pytest.fixture(scope="session")
def plans(gpu_plan, pipeline_plan) -> list[runner.Plan]:
    return [gpu_plan, pipeline_plan]


def pytest_collection_modifyitems(session, config, items):
    """The least-privilege check judges the AWS calls every function's and instance script's tests recorded
    (tests/iam_recorder.py), so it runs after all of them, wherever they sort."""
    last = [item for item in items if item.path.name == "test_least_privilege.py"]
    if last:
        items[:] = [item for item in items if item.path.name != "test_least_privilege.py"] + last
