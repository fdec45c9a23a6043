"""Read the ingest's WebDataset tar shards directly and turn them into labelled image batches.

A shard (contract 2) is an uncompressed tar of `<key>.jpg` + `<key>.json` pairs; the JSON carries
`"label"` (contract 1), `null` for an unlabelled image, which is skipped. Tars are read with the
standard library in streaming mode (`r|`): no index, no copy into another format, one pass per epoch.

Where the shards come from: a directory (a SageMaker File-mode channel, `SM_CHANNEL_<NAME>`). For an
S3Prefix channel SageMaker copies the objects below the prefix; for a ManifestFile channel it copies
the objects the manifest lists, each under its path relative to the manifest's prefix. Both arrive as
`*.tar` files somewhere below the channel directory, so shards are found recursively. A manifest
file placed in the directory itself (a local run) is honoured too: its relative paths are resolved
against the directory. Pipe mode is not supported (the tars must be files).

Only the standard library, Pillow and torch are used (no torchvision): the serving container and the
tests decode with the same `decode` function.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

# Contract 1: what a label may look like (the ingest lower-cases it first).
LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# ImageNet statistics: torchvision's pretrained weights expect them, and they do no harm from scratch.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MANIFEST_SUFFIXES = (".manifest",)

Sample = tuple[bytes, str]  # JPEG bytes, label


def find_shards(channel_dir: str | os.PathLike) -> list[Path]:
    """Every shard below a channel directory, sorted by path (the order is part of reproducibility)."""
    root = Path(channel_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"channel directory {root} does not exist")
    shards = {p for p in root.rglob("*.tar") if p.is_file()}
    for manifest in sorted(p for p in root.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file()):
        shards.update(_manifest_shards(root, manifest))
    return sorted(shards)


def _manifest_shards(root: Path, manifest: Path) -> list[Path]:
    entries = json.loads(manifest.read_text())
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise ValueError(f"{manifest}: a manifest is a JSON list starting with {{\"prefix\": ...}}")
    found = []
    for rel in entries[1:]:
        candidates = [root / rel, root / Path(rel).name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{manifest} lists {rel}, which is not in {root}")
        found.append(path)
    return found


def iter_records(shard: str | os.PathLike) -> Iterator[tuple[str, bytes, dict]]:
    """(key, jpeg bytes, metadata) for every complete pair of one shard, in tar order (streaming)."""
    pending: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            # WebDataset groups by the name up to the first dot of the file name.
            directory, _, base = member.name.rpartition("/")
            stem, dot, ext = base.partition(".")
            if not dot or ext not in ("jpg", "json"):
                continue
            key = f"{directory}/{stem}" if directory else stem
            parts = pending.setdefault(key, {})
            parts[ext] = tar.extractfile(member).read()
            if len(parts) == 2:
                del pending[key]
                yield key, parts["jpg"], json.loads(parts["json"])


def label_of(meta: dict) -> str | None:
    """The label of a shard record, or None when it is unlabelled (or not a valid label)."""
    label = meta.get("label")
    if not isinstance(label, str) or not LABEL_RE.match(label):
        return None
    return label


def iter_samples(shards: Sequence[Path]) -> Iterator[Sample]:
    """Labelled (jpeg, label) samples of the shards in the given order; unlabelled ones skipped."""
    for shard in shards:
        for _key, jpeg, meta in iter_records(shard):
            label = label_of(meta)
            if label is not None:
                yield jpeg, label


def scan_labels(shards: Sequence[Path]) -> dict[str, int]:
    """Per-label image counts from the JSON members only (random-access tar: JPEG data is skipped)."""
    counts: dict[str, int] = {}
    for shard in shards:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".json"):
                    label = label_of(json.loads(tar.extractfile(member).read()))
                    if label is not None:
                        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def decode(jpeg: bytes, image_size: int, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """JPEG (or any Pillow-readable image) bytes to a normalised float tensor [3, size, size]."""
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            img = img.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc
    # Through bytes, not numpy: the training and serving code need only torch and Pillow.
    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    tensor = pixels.view(image_size, image_size, 3).permute(2, 0, 1).float().div_(255.0)
    return tensor.sub_(torch.tensor(mean).view(3, 1, 1)).div_(torch.tensor(std).view(3, 1, 1))


def augment(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Training-only augmentation: a random horizontal flip and a random shift of up to 1/8 of the side."""
    if torch.rand((), generator=generator) < 0.5:
        image = image.flip(-1)
    size = image.shape[-1]
    pad = max(1, size // 8)
    padded = torch.nn.functional.pad(image.unsqueeze(0), (pad, pad, pad, pad), mode="reflect").squeeze(0)
    top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    return padded[:, top:top + size, left:left + size]


class ShardBatches(torch.utils.data.IterableDataset):
    """Batches of (images [B,3,S,S], targets [B]) streamed from shards.

    Training shuffles the shard order and, within a buffer, the samples, with a generator seeded by
    (seed, epoch); augmentation draws from a generator seeded per sample. An epoch's batches are
    therefore a function of (seed, epoch) alone, and `skip_batches` drops the first batches before
    decoding anything: a resumed run sees exactly the batches the interrupted one would have.
    With DataLoader workers, each worker streams every n-th shard and yields whole batches; the skip is
    exact while every worker still has batches (the loader takes them in turn): everywhere but near
    an epoch's end.
    """

    def __init__(self, shards: Sequence[Path], labels: Sequence[str], image_size: int, batch_size: int,
                 *, train: bool, seed: int = 0, epoch: int = 0, skip_batches: int = 0,
                 shuffle_buffer: int = 512):
        super().__init__()
        self.shards = list(shards)
        self.index = {label: i for i, label in enumerate(labels)}
        self.image_size = image_size
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.epoch = epoch
        self.skip_batches = skip_batches
        self.shuffle_buffer = shuffle_buffer

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"{self.seed}:{self.epoch}:{worker}")
        shards = list(self.shards)
        if self.train:
            rng.shuffle(shards)
        samples = iter_samples(shards[worker::workers])
        if self.train:
            samples = _buffer_shuffle(samples, self.shuffle_buffer, rng)
        # Global batch b comes from worker b % workers (the DataLoader reads workers in turn).
        skip = len(range(worker, self.skip_batches, workers))
        batch: list[Sample] = []
        ordinal = 0
        for sample in samples:
            if sample[1] not in self.index:
                continue  # a label the model was not built for (e.g. only in validation): left out
            batch.append(sample)
            if len(batch) == self.batch_size:
                if skip:
                    skip -= 1
                else:
                    yield self._tensors(batch, ordinal, worker)
                ordinal += 1
                batch = []
        if batch and not skip:
            yield self._tensors(batch, ordinal, worker)

    def _tensors(self, batch: list[Sample], ordinal: int, worker: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = []
        for position, (jpeg, _label) in enumerate(batch):
            image = decode(jpeg, self.image_size)
            if self.train:
                generator = torch.Generator().manual_seed(
                    _sample_seed(self.seed, self.epoch, worker, ordinal, position))
                image = augment(image, generator)
            images.append(image)
        targets = torch.tensor([self.index[label] for _jpeg, label in batch], dtype=torch.long)
        return torch.stack(images), targets


def _sample_seed(*parts: int) -> int:
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + part) % (1 << 62)
    return seed


def _buffer_shuffle(samples: Iterator[Sample], size: int, rng: random.Random) -> Iterator[Sample]:
    buffer: list[Sample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        i = rng.randrange(size)
        yield buffer[i]
        buffer[i] = sample
    rng.shuffle(buffer)
    yield from buffer


def loader(dataset: ShardBatches, num_workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over already-batched items; at most one worker per shard."""
    workers = max(0, min(num_workers, len(dataset.shards)))
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                       pin_memory=torch.cuda.is_available())
