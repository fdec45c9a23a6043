"""data.py: shards read as the ingest writes them, from plain or manifest channels."""

from __future__ import annotations

import json
import shutil

import builders
import pytest
import torch

from model import data


def test_labelled_pairs_are_read_and_unlabelled_images_skipped(shard_root):
    shards = data.find_shards(shard_root / "train")
    assert [p.name for p in shards] == ["shard-1-0.tar", "shard-1-1.tar", "shard-1-2.tar"]
    records = [r for shard in shards for r in data.iter_records(shard)]
    assert len(records) == 3 * 16 + 4
    assert sum(data.label_of(meta) is None for _, _, meta in records) == 4
    samples = list(data.iter_samples(shards))
    assert len(samples) == 48 and all(jpeg[:2] == b"\xff\xd8" for jpeg, _ in samples)
    assert data.scan_labels(shards) == {"blue": 16, "green": 16, "red": 16}


def test_a_manifest_channel_finds_the_listed_shards_wherever_they_landed(shard_root, tmp_path):
    # GIVEN the files of a ManifestFile channel: one under its relative path, one flattened to its name
    listed = sorted((shard_root / "validation").rglob("*.tar")) + sorted((shard_root / "test").rglob("*.tar"))[:1]
    (tmp_path / "2026/11/29").mkdir(parents=True)
    shutil.copy(listed[0], tmp_path / "2026/11/29" / listed[0].name)
    shutil.copy(listed[1], tmp_path / listed[1].name)
    (tmp_path / "train.manifest").write_text(json.dumps(
        [{"prefix": "s3://bucket/shards/"}, f"2026/11/29/{listed[0].name}", f"2026/11/29/{listed[1].name}"]))
    # THEN both are found once each, in path order
    assert data.find_shards(tmp_path) == sorted([tmp_path / "2026/11/29" / listed[0].name, tmp_path / listed[1].name])
    # AND a listed shard that did not arrive is an error, not a silently smaller data set
    (tmp_path / listed[1].name).unlink()
    with pytest.raises(FileNotFoundError, match="lists 2026/11/29/shard-3-0.tar"):
        data.find_shards(tmp_path)


def test_decode_resizes_to_a_normalised_tensor_and_refuses_non_images():
    import random
    jpeg = builders.image("red", random.Random(0))
    tensor = data.decode(jpeg, 20)
    assert tensor.shape == (3, 20, 20) and tensor.dtype == torch.float32
    assert tensor[0].mean() > tensor[2].mean()  # red: the red channel is the brightest
    with pytest.raises(ValueError, match="not a readable image"):
        data.decode(b"GIF89a but not really", 20)


def test_skipped_batches_are_exactly_the_first_batches_of_the_epoch(shard_root):
    shards = data.find_shards(shard_root / "train")

    def batches(skip: int):
        return list(data.ShardBatches(shards, ["blue", "green", "red"], 16, 8, train=True, seed=3, epoch=1,
                                      skip_batches=skip))

    full, tail = batches(0), batches(4)
    assert len(full) == 6 and len(tail) == 2
    for (images, targets), (images2, targets2) in zip(full[4:], tail):
        assert torch.equal(images, images2) and torch.equal(targets, targets2)
    # another epoch is another order
    other = list(data.ShardBatches(shards, ["blue", "green", "red"], 16, 8, train=True, seed=3, epoch=2))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(full, other))
