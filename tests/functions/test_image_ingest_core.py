"""The function's pure modules, without AWS: imaging (decode, validate, strip, resize) and shards."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from datetime import UTC
from typing import Any

import pytest
from ingest_builders import encode, jpeg_markers, picture
from PIL import Image, ImageCms, ImageOps


@pytest.fixture
def imaging(load: Any) -> Any:
    load()
    import imaging

    return imaging


@pytest.fixture
def preprocess(imaging: Any) -> Any:
    """imaging.preprocess with the handler's limits from the test environment (changes as keywords)."""
    import handler

    def run(data: bytes, budget: Any = None, **changes: Any) -> Any:
        limits = dataclasses.replace(handler.SETTINGS.limits, **changes)
        return handler.imaging.preprocess(data, limits, budget or handler.BUDGET)

    return run


@pytest.fixture
def shards(load: Any) -> Any:
    load()
    import shards

    return shards


@pytest.mark.parametrize(
    ("size", "target", "expected"),
    [
        ((4000, 3000), 512, (512, 384)),
        ((3000, 4000), 512, (384, 512)),
        ((300, 200), 512, (300, 200)),
        ((5000, 10), 512, (512, 1)),
    ],
)
def test_fit_within_keeps_aspect_and_never_upscales(imaging, size, target, expected):
    assert imaging.fit_within(*size, target) == expected


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_exif_transpose(preprocess, orientation):
    # GIVEN an image with each of the eight EXIF orientations
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(picture((640, 480)), quality=95, exif=exif)

    # WHEN it is preprocessed
    out = preprocess(data)

    # THEN it matches Pillow's own exif_transpose of the full image, resized
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).resize((out.out_width, out.out_height))
    got = Image.open(io.BytesIO(out.data)).convert("RGB")
    assert got.size == expected.size
    diff = [abs(a - b) for a, b in zip(got.tobytes(), expected.convert("RGB").tobytes(), strict=False)]
    assert sum(diff) / len(diff) < 4


def test_webp_is_accepted_and_reencoded_as_jpeg(preprocess):
    out = preprocess(encode(picture((800, 600)), "WEBP"))
    assert (out.format, out.out_width, out.out_height) == ("WEBP", 512, 384)
    assert Image.open(io.BytesIO(out.data)).format == "JPEG"


def test_transparent_png_is_composited_on_white(preprocess):
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out = preprocess(encode(img, "PNG"))
    assert Image.open(io.BytesIO(out.data)).getpixel((10, 10)) == (255, 255, 255)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(preprocess):
    img = Image.new("I;16", (64, 64), 32768)
    out = preprocess(encode(img, "PNG"))
    assert abs(Image.open(io.BytesIO(out.data)).getpixel((10, 10))[0] - 128) <= 2


def test_icc_profile_is_kept(preprocess):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = preprocess(encode(picture(), icc_profile=icc))
    assert Image.open(io.BytesIO(out.data)).info.get("icc_profile") == icc
    assert 0xE1 not in jpeg_markers(out.data)


def test_allowed_formats_can_exclude_png(imaging, preprocess):
    with pytest.raises(imaging.ImageRejected) as rejected:
        preprocess(encode(picture(), "PNG"), allowed_formats=("JPEG",))
    assert rejected.value.reason == "format_not_allowed"


def test_limits_reject_bad_settings_by_name(imaging):
    import handler

    limits = handler.SETTINGS.limits
    with pytest.raises(ValueError, match="jpeg_quality"):
        dataclasses.replace(limits, jpeg_quality=0)
    with pytest.raises(ValueError, match="allowed_formats"):
        dataclasses.replace(limits, allowed_formats=())


def test_shard_offsets_point_at_each_jpeg(shards):
    # GIVEN members of different sizes, including one that is a multiple of the tar block
    members = [shards.Member(f"b/k{i}#v", bytes([i]) * size, {"i": i}) for i, size in enumerate((1, 512, 1000, 70_000))]

    # WHEN they are packed
    data, locations = shards.build(members)

    # THEN each location slices out exactly that member's bytes, and the tar reads back in order
    for member in members:
        loc = locations[member.image_id]
        assert data[loc.offset : loc.offset + loc.length] == member.jpeg
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert json.load(tar.extractfile(names[1])) == {"i": 0}
    assert names[0] == f"{shards.member_key('b/k0#v')}.jpg"


def test_shard_bytes_and_key_depend_only_on_content(shards):
    from datetime import datetime

    members = [shards.Member("b/k#v", b"jpeg", {"a": 1})]
    first, _ = shards.build(members)
    second, _ = shards.build(members)
    when = datetime(2026, 11, 29, tzinfo=UTC)
    assert first == second
    key = shards.object_key("shards/", when, first)
    assert key.startswith("shards/2026/11/29/") and key.endswith(".tar")
    assert key == shards.object_key("shards/", when, second)
