"""The training entry point: it learns, checkpoints, resumes exactly, and prints parseable metrics."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from conftest import HPS, STEPS, run_training

from model import metrics, train


def _weights(model_dir):
    return torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)


def test_training_learns_the_colours_and_writes_the_serving_layout(trained):
    # GIVEN three colours in generated shards (with unlabelled images mixed in)
    # THEN the run ends after every step of both epochs, well above chance on validation
    assert trained.result["step"] == STEPS
    assert trained.result["labels"] == ["blue", "green", "red"]
    assert trained.result["validation:accuracy"] >= 0.9
    # AND the model directory has model.pt at its root and the inference code under code/
    saved = _weights(trained.model_dir)
    assert saved["config"]["architecture"] == "small"
    assert saved["config"]["image_size"] == 32
    assert saved["config"]["labels"] == ["blue", "green", "red"]
    assert sorted(os.listdir(trained.model_dir / "code")) == ["data.py", "inference.py", "net.py"]
    # AND only the newest checkpoints are kept, no temporary file left behind
    names = sorted(os.listdir(trained.checkpoints))
    assert len(names) == train.KEEP_CHECKPOINTS
    assert names[-1] == f"checkpoint-{STEPS:09d}.pt"
    assert all(name.startswith("checkpoint-") for name in names)


def test_metric_lines_parse_with_the_metric_definitions(trained):
    lines = [line for line in trained.log.splitlines() if line.startswith("METRIC ")]
    assert lines
    parsed: dict[str, list[float]] = {}
    for line in lines:
        matches = [(d["Name"], m) for d in metrics.METRIC_DEFINITIONS if (m := re.search(d["Regex"], line))]
        assert len(matches) == 1, line
        name, match = matches[0]
        assert match.group(0) == line  # the regex reads the whole value
        parsed.setdefault(name, []).append(float(match.group(1)))
    assert set(parsed) == {"train:loss", "train:accuracy", "validation:loss", "validation:accuracy"}
    # one validation per epoch; the last one is the run's result (printed to 6 significant digits)
    assert len(parsed["validation:accuracy"]) == int(HPS["epochs"])
    assert parsed["validation:accuracy"][-1] == pytest.approx(trained.result["validation:accuracy"], rel=1e-5)
    assert metrics.OBJECTIVE == {"Type": "Maximize", "MetricName": "validation:accuracy"}


def _interrupt_at(monkeypatch, step: int, action):
    calls = {"n": 0}
    real = train.train_step

    def wrapped(*args):
        calls["n"] += 1
        result = real(*args)
        if calls["n"] == step:
            action()
        return result

    monkeypatch.setattr(train, "train_step", wrapped)


def test_sigterm_writes_a_checkpoint_and_the_resumed_run_equals_the_uninterrupted_one(
        trained, shard_root, tmp_path, monkeypatch):
    # GIVEN a run that receives SIGTERM (a Spot reclaim) during step 3, before any periodic checkpoint
    _interrupt_at(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(train.Interrupted):
        run_training(shard_root, tmp_path)
    # THEN it stopped after that step with a checkpoint of it, and restored the SIGTERM handler
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["checkpoint-000000003.pt"]
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert not (tmp_path / "model").exists()
    # WHEN the job restarts
    monkeypatch.undo()
    resumed = run_training(shard_root, tmp_path)
    # THEN it continues at step 4 and ends exactly where the uninterrupted run ended
    assert "resumed from the checkpoint at step 3 (epoch 1)" in resumed.log
    assert resumed.result == trained.result
    _assert_same_weights(_weights(resumed.model_dir), _weights(trained.model_dir))


def test_a_crash_resumes_from_the_last_periodic_checkpoint_mid_epoch(trained, shard_root, tmp_path, monkeypatch):
    # GIVEN a run killed hard during step 10 (no chance to save): the newest checkpoint is step 8
    def crash():
        raise RuntimeError("killed")

    _interrupt_at(monkeypatch, 10, crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_training(shard_root, tmp_path)
    assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == "checkpoint-000000008.pt"
    monkeypatch.undo()
    # WHEN it restarts, it replays steps 9 and 10 of epoch 2 from the same data
    resumed = run_training(shard_root, tmp_path)
    assert "resumed from the checkpoint at step 8 (epoch 2)" in resumed.log
    assert resumed.result == trained.result
    _assert_same_weights(_weights(resumed.model_dir), _weights(trained.model_dir))


def _assert_same_weights(a, b):
    assert a["config"] == b["config"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key


def test_a_checkpoint_of_another_configuration_is_refused(shard_root, tmp_path):
    run_training(shard_root, tmp_path, ("--max_steps", "1"))
    with pytest.raises(ValueError, match="use an empty checkpoint location"):
        run_training(shard_root, tmp_path, ("--max_steps", "2", "--image_size", "24"))


def test_without_a_validation_channel_the_run_ends_without_validation_metrics(shard_root, tmp_path, monkeypatch):
    monkeypatch.setitem(HPS, "max_steps", "2")
    env = {"SM_CHANNEL_TRAIN": str(shard_root / "train"), "SM_MODEL_DIR": str(tmp_path / "model"),
           "SM_HPS": json.dumps(HPS)}
    lines: list[str] = []
    hp = train.parse_hyperparameters(["--checkpoint_dir", str(tmp_path / "ckpt")], env)
    result = train.train(hp, train.Paths.from_env(env, hp), emit=lines.append)
    assert result == {"step": 2, "labels": ["blue", "green", "red"]}
    assert lines.count("no validation channel: validation metrics skipped") == 1
    assert not any(line.startswith("METRIC validation:") for line in lines)
    assert (tmp_path / "model" / "model.pt").is_file()


def test_hyperparameters_from_sm_hps_then_the_command_line():
    env = {"SM_HPS": '{"epochs": 3, "batch_size": "16", "architecture": "small", "max_steps": "", '
                     '"sagemaker_program": "train.py"}'}
    hp = train.parse_hyperparameters(["--epochs", "5", "--learning_rate", "0.1", "--image_size", "64.0"], env)
    assert (hp.epochs, hp.batch_size, hp.learning_rate, hp.image_size, hp.max_steps) == (5, 16, 0.1, 64, 0)
    assert hp.architecture == "small" and hp.checkpoint_dir == "/opt/ml/checkpoints"


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch_size", "0"], "batch_size must be at least 1"),
    (["--epochs", "many"], "hyperparameter epochs must be int"),
    (["--epochs", "1.5"], "hyperparameter epochs must be int"),
    (["--learning_rate", "-1"], "learning_rate must be positive"),
    (["--labels", "cat,Dog!"], "hyperparameter labels has invalid labels"),
])
def test_bad_hyperparameters_name_the_key(argv, message):
    with pytest.raises(ValueError, match=message):
        train.parse_hyperparameters(argv, {})


def test_an_empty_train_channel_fails_clearly(tmp_path):
    (tmp_path / "train").mkdir()
    env = {"SM_CHANNEL_TRAIN": str(tmp_path / "train"), "SM_MODEL_DIR": str(tmp_path / "model")}
    with pytest.raises(ValueError, match="no \\*.tar shards in the train channel"):
        train.main(["--checkpoint_dir", str(tmp_path / "ckpt")], env)


def test_each_job_checkpoints_under_its_own_name_so_tuning_trials_never_share(tmp_path):
    hp = train.parse_hyperparameters([], {})
    base = Path(hp.checkpoint_dir)
    assert train.Paths.from_env({"TRAINING_JOB_NAME": "mlp-dev-tune-001-abc"}, hp).checkpoints == base / "mlp-dev-tune-001-abc"
    assert train.Paths.from_env({"TRAINING_JOB_NAME": "mlp-dev-tune-002-def"}, hp).checkpoints == base / "mlp-dev-tune-002-def"
    assert train.Paths.from_env({}, hp).checkpoints == base  # run by hand: the folder given
