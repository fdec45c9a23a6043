"""Decode, validate, strip and resize one image: the CPU core of the ingest function, free of AWS.

`preprocess` turns source bytes into a training JPEG or raises `ImageRejected` with a short
machine reason. Speed comes from not decoding pixels we throw away: a JPEG (multi-picture "MPO"
JPEGs included) is decoded with libjpeg's DCT scaling (`Image.draft`) to the smallest 1/1, 1/2,
1/4 or 1/8 size that is still at least the target, then one antialiased BILINEAR resample reaches
the exact size, and the EXIF orientation is applied to the small image rather than the full one.
Memory (issue 8): each decode first reserves its cost from the container's `DecodeBudget`; a
source whose pixel count is absurd for its byte count (a decompression bomb) is refused from the
header; and an image that is not RGB (palette, transparency, 16-bit grey) is reduced by an integer
factor strip by strip while it is converted, never converted at full size. Metadata: EXIF (GPS
included), XMP, comments and text chunks are dropped because the encoder is given a clean info
dict; an RGB ICC profile is kept when small (<= 64 KiB), because it describes colour rather than a
person and dropping it without a conversion would shift wide-gamut photos.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import budget as decode_budget

# Importing the plugins of the default formats registers them, so Image.open(formats=...) never
# calls Image.init(), which imports ~40 plugins (tens of ms of cold start).
from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

# Our own pixel limit is checked from the header before any pixel is decoded, so Pillow's
# global bomb check (which raises at 2x its own default) would only get in its way.
Image.MAX_IMAGE_PIXELS = None

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the image upright (same table as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_MAX_ICC_BYTES = 64 * 1024
# What Pillow's decoders raise on bad data besides OSError (which covers "truncated").
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


@dataclass(frozen=True)
class Limits:
    """Validation limits and output settings; the handler builds one from its environment (no defaults
    here: the stack's config is the one home of every value)."""

    training_image_size: int
    jpeg_quality: int
    max_input_bytes: int
    max_pixels: int
    max_pixels_per_byte: int
    min_dimension: int
    allowed_formats: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.training_image_size < 1:
            raise ValueError(f"training_image_size must be >= 1, got {self.training_image_size}")
        if self.max_pixels_per_byte < 1:
            raise ValueError(f"max_pixels_per_byte must be >= 1, got {self.max_pixels_per_byte}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be 1..95, got {self.jpeg_quality}")
        if not self.allowed_formats:
            raise ValueError("allowed_formats must name at least one format, e.g. JPEG,PNG,WEBP")


class ImageRejected(Exception):
    """An input that is not a valid image under the limits; `reason` is a short machine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Preprocessed:
    """A training JPEG and the dimensions of its source (after orientation) and of itself."""

    data: bytes
    format: str
    width: int
    height: int
    out_width: int
    out_height: int


def fit_within(width: int, height: int, target: int) -> tuple[int, int]:
    """Largest size within target x target with the same aspect ratio; never upscales."""
    longest = max(width, height)
    if longest <= target:
        return width, height
    scale = target / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


# The formats Pillow reports for JPEG files: a multi-picture JPEG (MPO, e.g. from phones and 3D
# cameras) opens as MpoImageFile, a JpegImageFile subclass, and takes the same reduced-size decode.
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})


def preprocess(data: bytes, limits: Limits, budget: decode_budget.DecodeBudget) -> Preprocessed:
    """Validate `data` fully and return the stripped, oriented, resized JPEG; raise ImageRejected."""
    if len(data) > limits.max_input_bytes:
        raise ImageRejected("too_large_bytes", f"{len(data)} bytes > {limits.max_input_bytes}")
    img = _open(data, limits.allowed_formats)
    width, height = img.size
    if width * height > limits.max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} > {limits.max_pixels} pixels")
    if width * height > limits.max_pixels_per_byte * len(data):
        # A 7 KB PNG of 60 MP is a decompression bomb, not a photo: refuse it before decoding.
        raise ImageRejected(
            "too_many_pixels_per_byte",
            f"{width}x{height} from {len(data)} bytes > {limits.max_pixels_per_byte} pixels per byte",
        )
    if min(width, height) < limits.min_dimension:
        raise ImageRejected("too_small", f"{width}x{height} has a side < {limits.min_dimension}")

    orientation = _orientation(img)
    swapped = orientation in _SWAPS_AXES
    upright = (height, width) if swapped else (width, height)
    out_w, out_h = fit_within(*upright, limits.training_image_size)
    # Size in the stored (not yet rotated) frame, which is what the decoder works in.
    stored = (out_h, out_w) if swapped else (out_w, out_h)
    icc = img.info.get("icc_profile")
    source_format = img.format or "UNKNOWN"

    box = None
    if source_format in _JPEG_FORMATS:
        try:
            drafted = img.draft("RGB", stored)
        except _DECODE_ERRORS as exc:
            raise ImageRejected("corrupt", f"decode failed: {exc}") from exc
        box = drafted[1] if drafted else None
    # After draft, size and mode are what the decoder will produce.
    factor = 1 if img.mode == "RGB" else max(1, min(img.size[0] // stored[0], img.size[1] // stored[1]))
    cost = decode_budget.decode_cost(*img.size, img.mode, factor, stored[0] * stored[1])
    if not budget.fits(cost):
        raise ImageRejected(
            "too_many_pixels", f"decoding {width}x{height} {img.mode} needs {cost} bytes > budget {budget.capacity}"
        )
    with budget.reserve(cost):
        try:
            img.load()
        except _DECODE_ERRORS as exc:
            reason = "truncated" if "truncated" in str(exc) else "corrupt"
            raise ImageRejected(reason, f"decode failed: {exc}") from exc
        if img.mode != "RGB":
            img, box = _reduce_to_rgb(img, factor), None
        if img.size != stored:
            img = img.resize(stored, Image.Resampling.BILINEAR, box=box)
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
    # resize/convert copy info (JPEG comments, XMP, EXIF); the encoder reads the comment from it.
    img.info = {}
    out = io.BytesIO()
    save_args: dict[str, object] = {"quality": limits.jpeg_quality}
    # Only an RGB profile describes the RGB output (a CMYK or grey one would now be wrong).
    if icc and len(icc) <= _MAX_ICC_BYTES and icc[16:20] == b"RGB ":
        save_args["icc_profile"] = icc
    img.save(out, "JPEG", **save_args)
    return Preprocessed(out.getvalue(), source_format, *upright, out_w, out_h)


def _reduce_to_rgb(img: Image.Image, factor: int) -> Image.Image:
    """Convert to RGB strip by strip, each strip box-reduced by `factor` as soon as it is converted,
    so the RGBA copies of a conversion exist for one strip at a time, never for the whole image.
    Strips are whole multiples of the factor, so the result equals reducing the converted image."""
    width, height = img.size
    rows = decode_budget.strip_rows(width, factor)
    if rows >= height:
        rgb = _to_rgb(img)
        return rgb.reduce(factor) if factor > 1 else rgb
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = _to_rgb(img.crop((0, top, width, min(height, top + rows))))  # crop keeps palette and info
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, top // factor))
    return out


def _open(data: bytes, allowed: tuple[str, ...]) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=list(allowed))
    except Image.UnidentifiedImageError:
        pass
    except _DECODE_ERRORS as exc:
        raise ImageRejected("corrupt", f"header unreadable: {exc}") from exc
    # Only on the reject path: try every plugin to tell "wrong format" from "not an image".
    try:
        other = Image.open(io.BytesIO(data))
    except _DECODE_ERRORS:
        raise ImageRejected("not_an_image", "no image decoder recognises the bytes") from None
    raise ImageRejected("format_not_allowed", f"{other.format} not in {','.join(allowed)}")


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        return 1  # unreadable EXIF is dropped anyway; treat the image as upright
    return value if isinstance(value, int) else 1


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit greyscale PNG: scale to 8 bits instead of letting convert() clip at 255.
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        # Transparent pixels often hold black; composite on white so they don't become black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
