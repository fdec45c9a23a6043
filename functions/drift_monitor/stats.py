"""Image statistics, fixed-edge histograms and the population stability index (PSI).

Pure functions (Pillow only). Histograms use fixed bin edges, so a baseline computed once from the
training snapshot and the statistics of any later period are comparable bin by bin.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from PIL import Image, ImageStat

# Bumped whenever a feature or its edges change, so a cached baseline of an older version is recomputed.
BASELINE_VERSION = 1
SAMPLE_SIDE = 64  # brightness and colour are measured on a thumbnail: cheap, and enough for a mean
OTHER_LABEL = "<other>"  # predictions of a label the snapshot does not have
PSI_EPSILON = 1e-4  # empty bins get this share, so ln() stays finite


def _edges(start: float, stop: float, step: float) -> tuple[float, ...]:
    n = int(round((stop - start) / step))
    return tuple(round(start + i * step, 6) for i in range(n + 1))


# Each histogram has an underflow and an overflow bin beyond its edges.
FEATURE_EDGES: dict[str, tuple[float, ...]] = {
    # log2 of the pixel count after fitting the image into the training size (what the model sees:
    # training shards hold fitted images, requests are raw, so raw sizes would always differ).
    "size": _edges(10.0, 24.0, 0.5),
    "aspect": _edges(-2.0, 2.0, 0.25),  # log2(width / height)
    "brightness": _edges(0.0, 256.0, 16.0),  # mean luma (ITU-R 601) of the thumbnail, 0-255
    # Chromaticity: a channel's share of R+G+B, so colour is measured apart from brightness.
    "red": _edges(0.15, 0.55, 0.025),
    "green": _edges(0.15, 0.55, 0.025),
    "blue": _edges(0.15, 0.55, 0.025),
}
FEATURES = tuple(FEATURE_EDGES)


@dataclass(frozen=True)
class ImageFeatures:
    size: float
    aspect: float
    brightness: float
    red: float
    green: float
    blue: float


def image_features(data: bytes, target_size: int) -> ImageFeatures:
    """Decode just enough of an image for its statistics; raises on bytes that are not an image."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        if width < 1 or height < 1:
            raise ValueError("empty image")
        img.draft("RGB", (SAMPLE_SIDE, SAMPLE_SIDE))  # JPEG: decode at 1/8 scale or less
        thumb = img.convert("RGB")
        thumb.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE))
        r, g, b = ImageStat.Stat(thumb).mean[:3]
    scale = min(1.0, target_size / max(width, height))
    fitted = max(1.0, round(width * scale)) * max(1.0, round(height * scale))
    total = r + g + b or 1.0
    return ImageFeatures(size=math.log2(fitted), aspect=math.log2(width / height),
                         brightness=0.299 * r + 0.587 * g + 0.114 * b,
                         red=r / total, green=g / total, blue=b / total)


def bin_index(value: float, edges: tuple[float, ...]) -> int:
    """0 = below the first edge, len(edges) = at or above the last; bins are [edge_i, edge_i+1)."""
    lo, hi = 0, len(edges)
    while lo < hi:
        mid = (lo + hi) // 2
        if value < edges[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


class Histograms:
    """Counts per feature bin, and per label."""

    def __init__(self) -> None:
        self.counts = {name: [0] * (len(edges) + 1) for name, edges in FEATURE_EDGES.items()}
        self.images = 0

    def add(self, features: ImageFeatures) -> None:
        self.images += 1
        for name, edges in FEATURE_EDGES.items():
            self.counts[name][bin_index(getattr(features, name), edges)] += 1

    def to_json(self) -> dict:
        return {name: {"edges": list(FEATURE_EDGES[name]), "counts": counts} for name, counts in self.counts.items()}


def psi(expected: Iterable[float], actual: Iterable[float]) -> float:
    """Population stability index of two distributions given as counts over the same bins."""
    e, a = list(expected), list(actual)
    if len(e) != len(a):
        raise ValueError(f"bins differ: {len(e)} vs {len(a)}")
    e_total, a_total = sum(e), sum(a)
    if e_total <= 0 or a_total <= 0:
        raise ValueError("a distribution with no observations has no PSI")
    score = 0.0
    for ec, ac in zip(e, a):
        ep, ap = max(ec / e_total, PSI_EPSILON), max(ac / a_total, PSI_EPSILON)
        score += (ap - ep) * math.log(ap / ep)
    return score


def label_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI of predicted labels against the training label counts; unknown labels share one bin."""
    labels = sorted(expected)
    other = sum(n for label, n in actual.items() if label not in expected)
    return psi([expected[label] for label in labels] + [0], [actual.get(label, 0) for label in labels] + [other])
