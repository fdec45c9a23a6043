"""evaluate.py: the candidate and the production model scored on the same test shards (contract 7)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from model import evaluate, net, train


def _archive(model_dir: Path, target: Path) -> Path:
    """model.tar.gz as SageMaker packs /opt/ml/model: the directory's contents at the archive root."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    return target


def _untrained_production(workdir: Path) -> Path:
    """A production model that knows a fourth label and never trained: a worse model."""
    torch.manual_seed(1)
    labels = ["blue", "green", "purple", "red"]
    model = net.build("small", len(labels))
    train.write_model(workdir / "production-model", model,
                      {"format": 1, "architecture": "small", "image_size": 32, "labels": labels})
    return workdir / "production-model"


def _inputs(trained, shard_root, tmp_path) -> Path:
    inputs = tmp_path / "input"
    _archive(trained.model_dir, inputs / "candidate" / "model.tar.gz")
    (inputs / "test").symlink_to(shard_root / "test", target_is_directory=True)
    return inputs


def _check_report(report: dict, labels: list[str], images: int) -> None:
    assert set(report) == {"accuracy", "per_class", "confusion_matrix", "labels"}
    assert report["labels"] == labels
    matrix = report["confusion_matrix"]
    assert len(matrix) == len(labels) and all(len(row) == len(labels) for row in matrix)
    assert sum(map(sum, matrix)) == images
    assert report["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(len(labels))) / images)
    assert set(report["per_class"]) == set(labels)
    for i, label in enumerate(labels):
        entry = report["per_class"][label]
        assert set(entry) == {"precision", "recall", "support"}
        assert entry["support"] == sum(matrix[i])
        predicted = sum(row[i] for row in matrix)
        assert entry["precision"] == pytest.approx(matrix[i][i] / predicted if predicted else 0.0)
        assert entry["recall"] == pytest.approx(matrix[i][i] / entry["support"] if entry["support"] else 0.0)


def test_the_first_model_is_scored_alone(trained, shard_root, tmp_path):
    # GIVEN the candidate's model.tar.gz, no production model, and 2 test shards (4 images a colour + unlabelled)
    inputs = _inputs(trained, shard_root, tmp_path)
    # WHEN the processing job runs
    target = evaluate.main(["--input-dir", str(inputs), "--output-dir", str(tmp_path / "output")])
    # THEN the report scores the 12 labelled test images; production is null
    report = json.loads(target.read_text())
    assert target == tmp_path / "output" / "evaluation.json"
    assert set(report) == {"candidate", "production", "test_images"}
    assert report["production"] is None
    assert report["test_images"] == 12
    _check_report(report["candidate"], ["blue", "green", "red"], 12)
    assert [report["candidate"]["per_class"][c]["support"] for c in ("blue", "green", "red")] == [4, 4, 4]
    assert report["candidate"]["accuracy"] >= 0.9


def test_candidate_and_production_score_the_same_images(trained, shard_root, tmp_path):
    inputs = _inputs(trained, shard_root, tmp_path)
    _archive(_untrained_production(tmp_path), inputs / "production" / "model.tar.gz")
    report = json.loads(evaluate.main(["--input-dir", str(inputs), "--output-dir", str(tmp_path / "out")])
                        .read_text())
    _check_report(report["candidate"], ["blue", "green", "red"], 12)
    # the production model's own label list, with a label no test image has (support 0)
    _check_report(report["production"], ["blue", "green", "purple", "red"], 12)
    assert report["production"]["per_class"]["purple"]["support"] == 0
    assert report["production"]["accuracy"] < report["candidate"]["accuracy"]


def test_an_archive_without_model_pt_is_refused(shard_root, tmp_path):
    archive = tmp_path / "candidate" / "model.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("weights.bin")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="has no model.pt at its root"):
        evaluate.evaluate(archive, shard_root / "test")


def test_a_missing_candidate_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model archive"):
        evaluate.main(["--input-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")])
