"""Issue 8, the function's memory: decoded pixels budgeted across worker threads, non-RGB images reduced
while they are converted (never converted at full size), decompression bombs refused from the header,
and multi-picture JPEGs (MPO) decoded at reduced size like any JPEG."""

from __future__ import annotations

import dataclasses
import io
import random
import threading
import time
from typing import Any

import pytest
from ingest_builders import encode, picture
from PIL import Image, JpegImagePlugin


def palette_png(size: tuple[int, int], *, noise: bool, seed: int = 1) -> bytes:
    """A 1-bit palette PNG whose colour 0 (red) is transparent: the issue's hostile file when flat
    (a few bytes per million pixels), an honest one when every pixel is random."""
    w, h = size
    if noise:
        bits = Image.frombytes("1", size, random.Random(seed).randbytes(w * h // 8))
        img = Image.frombytes("P", size, bits.convert("L").point(lambda v: 1 if v else 0).tobytes())
    else:
        img = Image.new("P", size, 0)
    img.putpalette([255, 0, 0, 0, 0, 255])
    return encode(img, "PNG", bits=1, transparency=0)


@pytest.fixture
def handler(load: Any) -> Any:
    return load()


def _preprocess(handler: Any, data: bytes, budget: Any = None, **changes: Any) -> Any:
    limits = dataclasses.replace(handler.SETTINGS.limits, **changes)
    return handler.imaging.preprocess(data, limits, budget or handler.budget.DecodeBudget(handler.BUDGET.capacity))


def test_a_decompression_bomb_is_refused_from_its_header(handler):
    # GIVEN a 3000x3000 palette PNG with transparency of about 1 KB (7,000+ pixels per byte)
    data = palette_png((3000, 3000), noise=False)
    budget = handler.budget.DecodeBudget(handler.BUDGET.capacity)

    # WHEN it is preprocessed THEN it is rejected before a pixel is decoded
    with pytest.raises(handler.imaging.ImageRejected) as rejected:
        _preprocess(handler, data, budget)
    assert rejected.value.reason == "too_many_pixels_per_byte"
    assert budget.peak == 0


def test_a_transparent_palette_png_is_reduced_while_converted_never_at_full_size(handler, monkeypatch):
    # GIVEN an honest (noisy, ~8 pixels per byte) 1600x1600 palette PNG with a transparent colour
    data = palette_png((1600, 1600), noise=True)
    conversions: list[tuple[str, tuple[int, int]]] = []
    convert = Image.Image.convert

    def spy(self: Image.Image, mode: str | None = None, *args: Any, **kwargs: Any) -> Image.Image:
        conversions.append((mode, self.size))
        return convert(self, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", spy)
    budget = handler.budget.DecodeBudget(handler.BUDGET.capacity)

    # WHEN it is preprocessed
    out = _preprocess(handler, data, budget)

    # THEN no conversion touched more than one strip of pixels (the old code made 1600x1600 RGBA copies)
    strip = handler.budget.STRIP_PIXELS
    assert conversions and max(w * h for _, (w, h) in conversions) <= strip
    # AND the decode reserved the 1-byte palette image plus one strip's working copies: less than the
    # old full-size path held at once (palette, RGBA, white background, composite, RGB: 17 bytes a pixel)
    assert 1600 * 1600 < budget.peak < 1600 * 1600 * 17
    # AND the result is the transparent red composited on white, averaged with the blue: light violet
    monkeypatch.undo()
    img = Image.open(io.BytesIO(out.data)).convert("RGB")
    assert img.size == (512, 512)
    r, g, b = img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert abs(r - 128) < 12 and abs(g - 128) < 12 and b > 240, (r, g, b)


def test_strip_conversion_matches_a_whole_image_conversion(handler, monkeypatch):
    # GIVEN a transparent palette image of 600x400 converted in strips of 9 rows (a multiple of 3)
    data = palette_png((600, 400), noise=True, seed=3)
    img = Image.open(io.BytesIO(data))
    img.load()
    monkeypatch.setattr(handler.budget, "STRIP_PIXELS", 600 * 10)
    assert handler.budget.strip_rows(600, 3) == 9

    # WHEN it is converted strip by strip THEN it equals converting it whole, then reducing
    whole = handler.imaging._to_rgb(img).reduce(3)
    assert handler.imaging._reduce_to_rgb(img, 3).tobytes() == whole.tobytes()


def test_worker_threads_never_hold_more_than_the_budget(handler):
    # GIVEN a budget of 100 bytes and four threads each wanting 60
    pool = handler.budget.DecodeBudget(100)
    holding: list[int] = []
    lock = threading.Lock()
    at_once: list[int] = []

    def work() -> None:
        with pool.reserve(60):
            with lock:
                holding.append(60)
                at_once.append(sum(holding))
            time.sleep(0.01)
            with lock:
                holding.remove(60)

    # WHEN they run together
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)

    # THEN they took turns: never more than one held its 60 bytes, and all finished
    assert max(at_once) == 60 and len(at_once) == 4 and pool.peak == 60
    with pytest.raises(ValueError, match="exceed the whole budget"):
        with pool.reserve(101):
            pass


def test_an_image_larger_than_the_whole_budget_is_rejected_not_waited_for(handler):
    budget = handler.budget.DecodeBudget(1_000_000)
    with pytest.raises(handler.imaging.ImageRejected) as rejected:
        _preprocess(handler, encode(picture((800, 600)), "PNG"), budget)
    assert rejected.value.reason == "too_many_pixels" and "budget" in rejected.value.detail


def test_the_budget_is_a_share_of_the_functions_memory(load):
    assert load().BUDGET.capacity == 2048 * 1024 * 1024 * 40 // 100
    assert load(AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024").BUDGET.capacity == 1024 * 1024 * 1024 * 40 // 100


def test_a_multi_picture_jpeg_takes_the_reduced_size_decode(handler, monkeypatch):
    # GIVEN an MPO (two pictures, as phones and stereo cameras write them) of 2048x1536
    first, second = picture((2048, 1536)), picture((2048, 1536)).rotate(180)
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=90)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    drafts: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: Any, mode: Any, size: Any) -> Any:
        drafts.append(size)
        return draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)

    # WHEN it is preprocessed
    out = _preprocess(handler, data)

    # THEN the DCT-scaled decode was asked for the target size, and the first picture is the output
    assert drafts == [(512, 384)]
    assert (out.format, out.out_width, out.out_height) == ("MPO", 512, 384)
    top = Image.open(io.BytesIO(out.data)).convert("RGB").getpixel((256, 10))
    assert top[0] > 200 and top[2] < 60  # red on top: the first picture, not the rotated second
