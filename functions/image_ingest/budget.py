"""How many bytes of decoded pixels the worker threads may hold at once, from the function's memory size.

Issue 8: a 7 KB palette PNG of 7745 x 7745 passed the pixel limit and was converted at full size
(~1.2 GB each); four of them in one batch took 4.4 GB in a 2 GB function. Every decode now reserves
its cost (width x height x bytes per pixel of the mode Pillow decodes to, plus the conversion's
working strip) from one budget per container before a pixel is decoded, and waits while other
threads hold too much. The budget is a share of the memory size; the rest holds the runtime, boto3
and Pillow (~100 MB), the source bytes being read (workers x maxImageMb at worst) and the batch's
output JPEGs. This module imports no image library, so the stack's config check can use it too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MIB = 1024 * 1024
DECODE_SHARE_PERCENT = 40
# Pixels converted per strip of a reduce-then-convert (imaging.py): small enough that the strip's
# RGBA working copies (16 bytes per pixel) stay a few tens of MB, large enough to amortise the calls.
STRIP_PIXELS = 1 << 20
STRIP_BYTES_PER_PIXEL = 16
# Bytes per pixel in Pillow's memory for each mode; every multi-band mode takes 4 (RGB included).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decode_budget_bytes(memory_mb: int) -> int:
    return memory_mb * MIB * DECODE_SHARE_PERCENT // 100


def bytes_per_pixel(mode: str) -> int:
    return _MODE_BYTES.get(mode, 4)


def strip_rows(width: int, factor: int) -> int:
    """Rows per strip: a multiple of the reduction factor (so strips reduce without seams), >= factor."""
    rows = max(1, STRIP_PIXELS // max(1, width))
    return max(factor, rows // factor * factor)


def decode_cost(width: int, height: int, mode: str, factor: int, out_pixels: int) -> int:
    """Peak bytes of one preprocess: the decoded image, one conversion strip, the reduced image and output."""
    decoded = width * height * bytes_per_pixel(mode)
    strip = min(height, strip_rows(width, factor)) * width * STRIP_BYTES_PER_PIXEL
    reduced = -(-width // factor) * -(-height // factor) * 4
    return decoded + strip + reduced + 2 * out_pixels * 4


def max_image_cost(max_pixels: int) -> int:
    """The cost the config check requires the budget to cover: the largest allowed RGBA image."""
    return max_pixels * 4 + STRIP_PIXELS * STRIP_BYTES_PER_PIXEL


class DecodeBudget:
    """A counting semaphore over bytes: `with budget.reserve(n):` waits until n bytes are free."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"decode budget must be positive, got {capacity}")
        self.capacity = capacity
        self.peak = 0  # the most bytes ever reserved at once (tests and the benchmark read it)
        self._free = capacity
        self._cond = threading.Condition()

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.capacity

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        if not self.fits(nbytes):
            raise ValueError(f"{nbytes} bytes exceed the whole budget of {self.capacity}")
        with self._cond:
            self._cond.wait_for(lambda: self._free >= nbytes)
            self._free -= nbytes
            self.peak = max(self.peak, self.capacity - self._free)
        try:
            yield
        finally:
            with self._cond:
                self._free += nbytes
                self._cond.notify_all()
