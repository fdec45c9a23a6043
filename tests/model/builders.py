"""Generated test data for the model tests: tiny solid-ish colour images packed into real shards.

The shards are written by the ingest function's own shard builder (contract 2), so the model reads
exactly what ingestion writes.
"""

from __future__ import annotations

import importlib.util
import io
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
SIZE = 32


def _ingest_shards():
    # Loaded by path under a private name: the function's modules are top-level names in Lambda.
    spec = importlib.util.spec_from_file_location("_ingest_shards", ROOT / "functions/image_ingest/shards.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


shards = _ingest_shards()


def image(label: str, rng: random.Random, size: int = SIZE) -> bytes:
    """A JPEG of the label's colour, jittered, with a darker square somewhere (not a constant image)."""
    base = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in COLOURS[label])
    img = Image.new("RGB", (size, size), base)
    x, y = rng.randint(0, size // 2), rng.randint(0, size // 2)
    ImageDraw.Draw(img).rectangle([x, y, x + size // 4, y + size // 4], fill=tuple(c // 2 for c in base))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def write_shards(directory: Path, *, shards_count: int, per_label: int, seed: int,
                 unlabelled: int = 0) -> list[Path]:
    """`shards_count` shards in `directory/YYYY/MM/DD/` holding `per_label` images of each colour in all."""
    rng = random.Random(seed)
    members = []
    for label in COLOURS:
        for i in range(per_label):
            members.append(shards.Member(f"incoming/{label}/{seed}-{i}.jpg", image(label, rng),
                                         {"source_key": f"incoming/{label}/{seed}-{i}.jpg", "label": label}))
    for i in range(unlabelled):
        members.append(shards.Member(f"incoming/{seed}-loose-{i}.jpg", image("red", rng),
                                     {"source_key": f"incoming/{seed}-loose-{i}.jpg", "label": None}))
    rng.shuffle(members)
    day = directory / "2026" / "11" / "29"
    day.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(shards_count):
        content, _ = shards.build(members[n::shards_count])
        path = day / f"shard-{seed}-{n}.tar"
        path.write_bytes(content)
        paths.append(path)
    return paths
