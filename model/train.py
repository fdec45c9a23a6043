"""SageMaker training entry point (contract 6): shards in, `model.pt` + `code/` out, metrics on stdout.

The PyTorch training container runs `python train.py --epochs 3 --batch_size 32 ...` from the
extracted `code` channel, with `SM_CHANNEL_TRAIN`, `SM_CHANNEL_VALIDATION`, `SM_CHANNEL_PRETRAINED`
(optional), `SM_MODEL_DIR` and `SM_HPS` (the hyperparameters as JSON) set by the training toolkit.
Hyperparameters are read from `SM_HPS`, then from the command line (which wins); both may carry
strings, as `CreateTrainingJob` requires, or JSON-decoded values, as the toolkit passes them.

Managed Spot: a checkpoint is written every `checkpoint_steps` steps, at the end of each epoch and on
SIGTERM, atomically (temporary file, then rename) into `/opt/ml/checkpoints`, which SageMaker syncs
with S3; a restarted job resumes from the newest readable one (weights, optimizer, step, position in
the epoch, running metric sums, RNG states). The data order is a function of (seed, epoch), so a
resumed run on the CPU reproduces the uninterrupted one exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

try:  # as the `model` package (tests, tools) ...
    from . import data, metrics, net
except ImportError:  # ... or flat, as the container runs it from the code directory
    import data  # type: ignore[no-redef]
    import metrics  # type: ignore[no-redef]
    import net  # type: ignore[no-redef]

MODEL_FILE = "model.pt"
MODEL_FORMAT = 1
# What `code/` in model.tar.gz needs: the inference module and the modules it imports.
CODE_FILES = ("inference.py", "data.py", "net.py")
CHECKPOINT_PREFIX = "checkpoint-"
KEEP_CHECKPOINTS = 2
EXIT_INTERRUPTED = 143  # 128 + SIGTERM


class Interrupted(Exception):
    """SIGTERM arrived (Spot reclaim or StopTrainingJob): a checkpoint was written, the run stops."""


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.001
    checkpoint_steps: int = 100
    architecture: str = net.SMALL
    image_size: int = 224
    max_steps: int = 0  # 0: no limit besides the epochs
    seed: int = 0
    num_workers: int = -1  # -1: one per CPU less one, at most 8
    labels: str = ""  # comma-separated label list; empty: the labels found in the train channel
    checkpoint_dir: str = "/opt/ml/checkpoints"

    def __post_init__(self) -> None:
        limits = {"epochs": 1, "batch_size": 1, "checkpoint_steps": 1, "image_size": 8, "max_steps": 0,
                  "num_workers": -1}
        for name, low in limits.items():
            if getattr(self, name) < low:
                raise ValueError(f"hyperparameter {name} must be at least {low}, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"hyperparameter learning_rate must be positive, got {self.learning_rate}")
        bad = [label for label in self.label_list() if not data.LABEL_RE.match(label)]
        if bad:
            raise ValueError(f"hyperparameter labels has invalid labels {bad} (pattern {data.LABEL_RE.pattern})")

    def label_list(self) -> list[str]:
        return [label.strip() for label in self.labels.split(",") if label.strip()]

    def workers(self) -> int:
        if self.num_workers >= 0:
            return self.num_workers
        return max(0, min(8, (os.cpu_count() or 1) - 1))


def parse_hyperparameters(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Hyperparameters:
    """Defaults, overridden by `SM_HPS` (JSON), overridden by `--name value` arguments."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(Hyperparameters)}
    values: dict[str, object] = {}
    hps = json.loads(env.get("SM_HPS") or "{}")
    for name, value in hps.items():
        if name in fields:
            values[name] = value
    parser = argparse.ArgumentParser(description="Train the image classifier on WebDataset shards.")
    for name in fields:
        parser.add_argument(f"--{name}", f"--{name.replace('_', '-')}", dest=name)
    args, unknown = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if unknown:
        print(f"ignoring unknown arguments: {' '.join(unknown)}", flush=True)
    values.update({k: v for k, v in vars(args).items() if v is not None})
    converted = {name: _convert(name, fields[name].type, value) for name, value in values.items()
                 if not (isinstance(value, str) and value.strip() == "")}  # "" means: the default
    return Hyperparameters(**converted)


def _convert(name: str, kind: str, value: object) -> object:
    try:
        if kind == "int":
            number = float(value)
            if isinstance(value, bool) or not number.is_integer():
                raise ValueError
            return int(number)
        return float(value) if kind == "float" else str(value)
    except (TypeError, ValueError):
        raise ValueError(f"hyperparameter {name} must be {kind}, got {value!r}") from None


@dataclass(frozen=True)
class Paths:
    train: Path
    validation: Path | None
    pretrained: Path | None
    model_dir: Path
    checkpoints: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str], hp: Hyperparameters) -> Paths:
        def channel(name: str) -> Path | None:
            value = env.get(f"SM_CHANNEL_{name.upper()}")
            return Path(value) if value and Path(value).is_dir() else None

        return cls(train=Path(env.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")),
                   validation=channel("validation"), pretrained=channel("pretrained"),
                   model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
                   checkpoints=checkpoint_folder(Path(hp.checkpoint_dir), env.get("TRAINING_JOB_NAME")))


def checkpoint_folder(base: Path, job_name: str | None) -> Path:
    """Checkpoints under the job's own name: a tuning job's trials share one checkpoint S3 URI, and a trial
    must never resume from another trial's weights; a Spot restart keeps its job name, so it resumes."""
    return base / job_name if job_name else base


def pretrained_file(channel: Path | None) -> Path | None:
    """The one weights file (`*.pt`, `*.pth`) in the `pretrained` channel, if the channel was given."""
    if channel is None:
        return None
    files = sorted(p for p in channel.rglob("*") if p.is_file() and p.suffix in (".pt", ".pth"))
    if len(files) != 1:
        raise ValueError(f"the pretrained channel {channel} must hold exactly one .pt/.pth file, found "
                         f"{[p.name for p in files]}")
    return files[0]


# ---- checkpoints ---------------------------------------------------------------------------------

def save_checkpoint(directory: Path, step: int, payload: dict) -> Path:
    """Write `checkpoint-<step>.pt` atomically and keep only the newest few."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{CHECKPOINT_PREFIX}{step:09d}.pt"
    tmp = directory / f".{final.name}.tmp"
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for old in _checkpoints(directory)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return final


def load_latest_checkpoint(directory: Path) -> dict | None:
    """The newest checkpoint that loads (a torn upload falls back to the one before), or None."""
    for path in reversed(_checkpoints(directory)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: try the previous one
            print(f"skipping unreadable checkpoint {path.name}: {exc}", flush=True)
    return None


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{CHECKPOINT_PREFIX}*.pt") if p.is_file())


# ---- the model artifact (contract 5) -------------------------------------------------------------

def write_model(model_dir: Path, model: nn.Module, config: dict) -> Path:
    """`model.pt` (weights + JSON-able config) and `code/` (inference.py and its modules)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    json.dumps(config)  # the config must stay JSON-able: fail here, not in the serving container
    target = model_dir / MODEL_FILE
    tmp = model_dir / f".{MODEL_FILE}.tmp"
    state = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
    torch.save({"config": config, "state_dict": state}, tmp)
    os.replace(tmp, target)
    code = model_dir / "code"
    code.mkdir(exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in CODE_FILES:
        shutil.copyfile(here / name, code / name)
    return target


# ---- training ------------------------------------------------------------------------------------

@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


class _SigtermFlag:
    """Sets a flag on SIGTERM while installed (main thread only); the loop checks it after each step."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> _SigtermFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.raised = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               targets: torch.Tensor) -> tuple[float, int]:
    """One optimisation step; returns the summed loss and the number of correct predictions."""
    optimizer.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
    logits = model(images)
    loss = nn.functional.cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    return float(loss.detach()) * len(targets), int((logits.argmax(1) == targets).sum())


@torch.no_grad()
def score(model: nn.Module, shards: Sequence[Path], labels: Sequence[str], image_size: int, batch_size: int,
          workers: int = 0) -> dict[str, float]:
    """Mean loss and accuracy over the labelled images of the shards (labels unknown to the model skipped)."""
    model.eval()
    dataset = data.ShardBatches(shards, labels, image_size, batch_size, train=False)
    loss_sum, correct, seen = 0.0, 0, 0
    device = next(model.parameters()).device
    for images, targets in data.loader(dataset, workers):
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets).sum())
        seen += len(targets)
    if seen == 0:
        return {"loss": 0.0, "accuracy": 0.0, "images": 0}
    return {"loss": loss_sum / seen, "accuracy": correct / seen, "images": seen}


def train(hp: Hyperparameters, paths: Paths, emit: Callable[[str], None] = print) -> dict:
    """Train (or resume) to the end, write the model, and return the final metrics."""
    def say(text: str) -> None:
        emit(text)
        sys.stdout.flush()

    torch.manual_seed(hp.seed)
    random.seed(hp.seed)
    train_shards = data.find_shards(paths.train)
    if not train_shards:
        raise ValueError(f"no *.tar shards in the train channel {paths.train}")
    counts = data.scan_labels(train_shards)
    labels = hp.label_list() or sorted(counts)
    if len(labels) < 2:
        raise ValueError(f"training needs at least 2 labels, the train channel has {sorted(counts)}")
    validation_shards = data.find_shards(paths.validation) if paths.validation else []
    say(f"train: {len(train_shards)} shards, {sum(counts.values())} labelled images, labels {labels}; "
        f"validation: {len(validation_shards)} shards")

    config = {"format": MODEL_FORMAT, "architecture": hp.architecture, "image_size": hp.image_size,
              "labels": labels, "mean": list(data.MEAN), "std": list(data.STD)}
    checkpoint = load_latest_checkpoint(paths.checkpoints)
    pretrained = None if checkpoint else pretrained_file(paths.pretrained)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = net.build(hp.architecture, len(labels), pretrained).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate)
    progress = Progress()
    if checkpoint:
        if checkpoint["config"] != config:
            raise ValueError(f"the checkpoint in {paths.checkpoints} was written for {checkpoint['config']}, "
                             f"this run is {config}: use an empty checkpoint location for a new run")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        progress = Progress(**checkpoint["progress"])
        torch.set_rng_state(checkpoint["torch_rng"])
        random.setstate(checkpoint["python_rng"])
        say(f"resumed from the checkpoint at step {progress.step} (epoch {progress.epoch + 1})")

    def save() -> None:
        save_checkpoint(paths.checkpoints, progress.step, {
            "config": config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "progress": dataclasses.asdict(progress), "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate()})

    printed_at = [-1]

    def train_metrics() -> None:
        if progress.seen and printed_at[0] != progress.step:
            printed_at[0] = progress.step
            say(metrics.line("train:loss", progress.loss_sum / progress.seen))
            say(metrics.line("train:accuracy", progress.correct / progress.seen))

    def out_of_steps() -> bool:
        return bool(hp.max_steps) and progress.step >= hp.max_steps

    result: dict | None = None
    with _SigtermFlag() as sigterm:
        while progress.epoch < hp.epochs and not out_of_steps():
            dataset = data.ShardBatches(train_shards, labels, hp.image_size, hp.batch_size, train=True,
                                        seed=hp.seed, epoch=progress.epoch, skip_batches=progress.batch_in_epoch)
            model.train()
            for images, targets in data.loader(dataset, hp.workers()):
                loss_sum, correct = train_step(model, optimizer, images, targets)
                progress.step += 1
                progress.batch_in_epoch += 1
                progress.loss_sum += loss_sum
                progress.correct += correct
                progress.seen += len(targets)
                if sigterm.raised:
                    save()
                    raise Interrupted(f"SIGTERM at step {progress.step}: checkpoint written")
                if progress.step % hp.checkpoint_steps == 0:
                    save()
                    train_metrics()
                if out_of_steps():
                    break
            say(f"epoch {progress.epoch + 1} done at step {progress.step}")
            train_metrics()
            result = _validate(model, validation_shards, labels, hp, say)
            if not out_of_steps():
                progress = Progress(step=progress.step, epoch=progress.epoch + 1)
            save()
    if result is None:  # resumed after the last epoch had ended: report the final metrics again
        result = _validate(model, validation_shards, labels, hp, say)
    write_model(paths.model_dir, model, config)
    say(f"model written to {paths.model_dir} after {progress.step} steps")
    return {"step": progress.step, "labels": labels, **result}


def _validate(model, shards, labels, hp: Hyperparameters, say) -> dict:
    if not shards:
        say("no validation channel: validation metrics skipped")
        return {}
    scores = score(model, shards, labels, hp.image_size, hp.batch_size, hp.workers())
    say(metrics.line("validation:loss", scores["loss"]))
    say(metrics.line("validation:accuracy", scores["accuracy"]))
    return {"validation:loss": scores["loss"], "validation:accuracy": scores["accuracy"]}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    hp = parse_hyperparameters(argv, env)
    return train(hp, Paths.from_env(env, hp))


def _write_failure(message: str) -> None:
    # SageMaker shows the first 1024 characters of this file as the job's FailureReason.
    output = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    if output.is_dir():
        (output / "failure").write_text(message[:1024])


if __name__ == "__main__":
    try:
        main()
    except Interrupted as exc:
        print(exc, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        _write_failure(f"{type(exc).__name__}: {exc}")
        raise
