"""Score the candidate and the production model on the same test shards (contract 7).

Run in a SageMaker Processing job with the inputs under `/opt/ml/processing/input/`: `candidate/`
and `production/` (each holding a model.tar.gz; production absent or empty for the first model) and
`test/` (shard tars, found recursively). Writes `/opt/ml/processing/output/evaluation.json`:
`{"candidate": report, "production": report | null, "test_images": N}` where a report is
`{"accuracy", "per_class": {label: {"precision", "recall", "support"}}, "confusion_matrix", "labels"}`
(confusion_matrix[i][j]: images of labels[i] predicted as labels[j]). Both models score exactly the
same images with the current code; a test label a model does not know counts as a miss.

Needs its sibling modules (inference.py, data.py, net.py) beside it: run it from the extracted code
channel, e.g. `python3 evaluate.py` in the directory where sourcedir.tar.gz was unpacked.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import torch

try:  # as the `model` package ...
    from . import data, inference
except ImportError:  # ... or flat, from the extracted code channel
    import data  # type: ignore[no-redef]
    import inference  # type: ignore[no-redef]

INPUT_DIR = Path("/opt/ml/processing/input")
OUTPUT_DIR = Path("/opt/ml/processing/output")
REPORT_FILE = "evaluation.json"
BATCH = 64


def find_archive(directory: Path | None) -> Path | None:
    """The model.tar.gz in an input directory (any *.tar.gz if named otherwise), or None if absent."""
    if directory is None or not directory.is_dir():
        return None
    archives = sorted(directory.rglob("*.tar.gz"))
    preferred = [a for a in archives if a.name == "model.tar.gz"]
    if len(preferred or archives) > 1:
        raise ValueError(f"{directory} holds several model archives: {[a.name for a in archives]}")
    return (preferred or archives or [None])[0]


def load_archive(archive: Path) -> inference.LoadedModel:
    """A model from model.tar.gz, reading model.pt from the archive without extracting anything."""
    with tarfile.open(archive, mode="r:gz") as tar:
        member = next((m for m in tar.getmembers()
                       if m.isfile() and m.name.removeprefix("./") == inference.MODEL_FILE), None)
        if member is None:
            raise ValueError(f"{archive} has no {inference.MODEL_FILE} at its root")
        saved = torch.load(io.BytesIO(tar.extractfile(member).read()), map_location="cpu", weights_only=True)
    return inference.from_saved(saved)


class _Tally:
    def __init__(self, model: inference.LoadedModel):
        self.model = model
        self.pairs: list[tuple[str, str]] = []  # (true label, predicted label)

    @torch.no_grad()
    def add(self, batch: Sequence[tuple[bytes, str]]) -> None:
        images = torch.stack([self.model.decode(jpeg) for jpeg, _label in batch])
        predicted = self.model.network(images).argmax(1).tolist()
        self.pairs.extend((label, self.model.labels[p]) for (_jpeg, label), p in zip(batch, predicted))

    def report(self) -> dict:
        labels = sorted(set(self.model.labels) | {true for true, _ in self.pairs})
        index = {label: i for i, label in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for true, predicted in self.pairs:
            matrix[index[true]][index[predicted]] += 1
        per_class = {}
        for label, i in index.items():
            support = sum(matrix[i])
            predicted = sum(row[i] for row in matrix)
            hit = matrix[i][i]
            per_class[label] = {"precision": hit / predicted if predicted else 0.0,
                                "recall": hit / support if support else 0.0, "support": support}
        correct = sum(matrix[i][i] for i in range(len(labels)))
        return {"accuracy": correct / len(self.pairs), "per_class": per_class,
                "confusion_matrix": matrix, "labels": labels}


def evaluate(candidate: Path, test_dir: Path, production: Path | None = None) -> dict:
    """The evaluation report of a candidate model.tar.gz (and the production one) on the test shards."""
    shards = data.find_shards(test_dir)
    if not shards:
        raise ValueError(f"no *.tar shards in the test input {test_dir}")
    tallies = {"candidate": _Tally(load_archive(candidate))}
    if production is not None:
        tallies["production"] = _Tally(load_archive(production))
    batch: list[tuple[bytes, str]] = []
    count = 0
    for sample in data.iter_samples(shards):
        batch.append(sample)
        count += 1
        if len(batch) == BATCH:
            for tally in tallies.values():
                tally.add(batch)
            batch = []
    if batch:
        for tally in tallies.values():
            tally.add(batch)
    if count == 0:
        raise ValueError(f"the test shards in {test_dir} hold no labelled images")
    return {"candidate": tallies["candidate"].report(),
            "production": tallies["production"].report() if production is not None else None,
            "test_images": count}


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Score candidate and production models on test shards.")
    parser.add_argument("--input-dir", type=Path, default=INPUT_DIR)
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    candidate = find_archive(args.input_dir / "candidate")
    if candidate is None:
        raise FileNotFoundError(f"no model archive in {args.input_dir / 'candidate'}")
    report = evaluate(candidate, args.input_dir / "test", find_archive(args.input_dir / "production"))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    target = args.output_dir / REPORT_FILE
    target.write_text(json.dumps(report, indent=2, sort_keys=True))
    print(f"candidate accuracy {report['candidate']['accuracy']:.4f}, production "
          f"{report['production']['accuracy'] if report['production'] else 'none'}, "
          f"{report['test_images']} test images -> {target}", flush=True)
    return target


if __name__ == "__main__":
    main(sys.argv[1:])
