"""Fixtures of the observability tests: generated image sets (a training set, an unshifted sample of
the same population, and a shifted one: brighter images, another class mix), the drift function in
moto, and the observability component planned with every section."""
from __future__ import annotations

import random
from typing import Any, Iterator

import pytest

from drift_world import SHIFTED_MIX, TRAIN_MIX, drift_function, labels_for, make_image, snapshot_world


@pytest.fixture(scope="session")
def image_sets() -> dict[str, tuple[list[bytes], list[str]]]:
    """Generated once per session: train, unshifted and shifted (300 each) images with labels."""
    rng = random.Random(7)
    def sample(n: int, shift: int, mix: tuple[float, ...]):
        return [make_image(rng, shift) for _ in range(n)], labels_for(rng, n, mix)
    return {"train": sample(300, 0, TRAIN_MIX), "unshifted": sample(300, 0, TRAIN_MIX),
            "shifted": sample(300, 70, SHIFTED_MIX)}


@pytest.fixture
def drift(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with drift_function(monkeypatch) as module:
        yield module


@pytest.fixture
def aws(drift, image_sets) -> Iterator[dict[str, Any]]:
    with snapshot_world(image_sets) as world:
        yield world


@pytest.fixture(scope="session")
def full_plan():
    """The observability component with every section (full_program.py), planned once."""
    import full_program
    return full_program.plan()


# Record the AWS calls of functions/* and gpu_training/instance/* for test_least_privilege.py. Installed
# at collection, before any test runs; the recorded tests (tests/functions, tests/gpu_training) sort
# before this folder, so their calls are in when the check runs.
from tests import iam_recorder  # noqa: E402

iam_recorder.install()
