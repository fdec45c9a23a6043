"""Fixtures for the model tests: generated shards and one uninterrupted training run, built once."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

# torch warns at import that numpy is absent; the model code does not use numpy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

# The builders module sits beside this file; put it on the path whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import builders  # noqa: E402

from model import train  # noqa: E402

# Tiny convolutions gain nothing from intra-op threads; on a shared machine they lose a lot to them.
torch.set_num_threads(1)

# 48 labelled training images in batches of 8: 6 steps an epoch, 12 in all, a checkpoint every 4.
HPS = {"epochs": "2", "batch_size": "8", "learning_rate": "0.01", "checkpoint_steps": "4",
       "image_size": "32", "num_workers": "0", "seed": "0"}
STEPS = 12


@dataclass
class Run:
    result: dict
    model_dir: Path
    checkpoints: Path
    log: str


@pytest.fixture(scope="session")
def shard_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shards")
    builders.write_shards(root / "train", shards_count=3, per_label=16, seed=1, unlabelled=4)
    builders.write_shards(root / "validation", shards_count=1, per_label=4, seed=2, unlabelled=1)
    builders.write_shards(root / "test", shards_count=2, per_label=4, seed=3, unlabelled=1)
    return root


def run_training(shard_root: Path, workdir: Path, argv: tuple[str, ...] = ()) -> Run:
    """train.py's main as the container calls it: channels and model dir in the environment, SM_HPS."""
    env = {"SM_CHANNEL_TRAIN": str(shard_root / "train"),
           "SM_CHANNEL_VALIDATION": str(shard_root / "validation"),
           "SM_MODEL_DIR": str(workdir / "model"), "SM_HPS": json.dumps(HPS)}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            result = train.main(["--checkpoint_dir", str(workdir / "checkpoints"), *argv], env)
    finally:
        sys.stdout.write(out.getvalue())  # shown by pytest when a test fails
    return Run(result, workdir / "model", workdir / "checkpoints", out.getvalue())


@pytest.fixture(scope="session")
def trained(shard_root, tmp_path_factory) -> Run:
    return run_training(shard_root, tmp_path_factory.mktemp("trained"))
