"""Pack one batch of processed images into one WebDataset-style tar shard, in memory.

A shard is an uncompressed ustar archive of `<key>.jpg` + `<key>.json` pairs, where `<key>` is a
hash of the image id (WebDataset groups members by the name before the first dot). One PUT per
batch instead of one per image is the cost design: at ~2M images/TB a PUT per image is ~$10/TB.
The object name is the SHA-256 of the shard's bytes, so a retried batch that rebuilds the same
shard overwrites it with identical bytes, and a catalog item can never point into a shard whose
offsets changed under it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import datetime

_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Member:
    """One image to pack: its id, its JPEG bytes and the lineage written beside it."""

    image_id: str
    jpeg: bytes
    lineage: dict[str, object]


@dataclass(frozen=True)
class Location:
    """Where an image's JPEG bytes sit inside the shard object (for ranged GETs)."""

    offset: int
    length: int


def member_key(image_id: str) -> str:
    return hashlib.sha256(image_id.encode()).hexdigest()[:32]


def build(members: list[Member]) -> tuple[bytes, dict[str, Location]]:
    """Return the tar bytes and, per image id, the offset and length of its JPEG data."""
    buf = io.BytesIO()
    locations: dict[str, Location] = {}
    # ustar, fixed mtime and owner: the bytes depend only on the members, so the name can too.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member in members:
            key = member_key(member.image_id)
            _add(tar, f"{key}.jpg", member.jpeg)
            # The data ends where the tar offset stands less its padding to a 512-byte block.
            end = tar.offset - (-len(member.jpeg) % _BLOCK)
            locations[member.image_id] = Location(end - len(member.jpeg), len(member.jpeg))
            _add(tar, f"{key}.json", json.dumps(member.lineage, sort_keys=True).encode())
    return buf.getvalue(), locations


def object_key(prefix: str, when: datetime, data: bytes) -> str:
    """`{prefix}YYYY/MM/DD/<sha256 of the bytes>.tar`, dated by when the shard is written."""
    digest = hashlib.sha256(data).hexdigest()[:40]
    return f"{prefix}{when:%Y/%m/%d}/{digest}.tar"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
