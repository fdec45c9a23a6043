"""Image ingestion's settings: prefixes, image limits and the function's sizing, read from config once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from shared.config_reader import ConfigError, ConfigReader
from shared.lambda_function import ARCHITECTURES, LOG_LEVELS, function_module

# The function's decode budget (a share of its memory), so the config check and the function agree.
_budget = function_module("image_ingest", "budget")

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")


def _prefix_ok(value: str) -> bool:
    return bool(value) and value.endswith("/") and not value.startswith("/")


@dataclass(frozen=True)
class IngestSettings:
    raw_prefix: str
    quarantine_prefix: str
    shard_prefix: str
    label_path_segment: int
    training_image_size: int
    jpeg_quality: int
    max_input_mb: int
    max_megapixels: int
    max_pixels_per_byte: int
    min_dimension: int
    allowed_formats: tuple[str, ...]
    memory_mb: int
    architecture: str
    timeout_s: int
    batch_size: int
    batch_window_s: int
    max_concurrency: int
    reserved_concurrency: Optional[int]
    max_receive_count: int
    workers: int
    log_level: str


def load(reader: ConfigReader) -> IngestSettings:
    timeout = reader.integer("ingestTimeoutSeconds", 90, minimum=10, maximum=900)
    batch_size = reader.integer("ingestBatchSize", 50, minimum=1, maximum=10000)
    window = reader.integer("ingestBatchWindowSeconds", 5, minimum=0, maximum=300)
    # AWS rejects an SQS event source mapping with a batch over 10 and no batching window.
    reader.require(batch_size <= 10 or window >= 1, ["ingestBatchWindowSeconds", "ingestBatchSize"],
                   "ingestBatchWindowSeconds must be >= 1 when ingestBatchSize is over 10",
                   f"batch {batch_size}, window {window}")
    reserved = reader.integer("ingestReservedConcurrency", 0, minimum=0, maximum=1000)
    max_concurrency = reader.integer("ingestMaxConcurrency", 20, minimum=2, maximum=1000)
    reader.require(not reserved or reserved >= max_concurrency, ["ingestReservedConcurrency", "ingestMaxConcurrency"],
                   "ingestReservedConcurrency must be 0 (unset) or >= ingestMaxConcurrency, or SQS batches get "
                   "throttled", f"{reserved} and {max_concurrency}")
    prefix_rule = dict(check=_prefix_ok, expected="a key prefix ending in / without a leading /")
    raw_prefix = reader.string("rawPrefix", "incoming/", **prefix_rule)
    quarantine_prefix = reader.string("quarantinePrefix", "quarantine/", **prefix_rule)
    # A quarantined copy under the ingest prefix would be ingested again, forever.
    reader.require(not (quarantine_prefix.startswith(raw_prefix) or raw_prefix.startswith(quarantine_prefix)),
                   ["quarantinePrefix", "rawPrefix"], "quarantinePrefix must not overlap rawPrefix",
                   f"{quarantine_prefix!r} and {raw_prefix!r}")
    memory_mb = reader.integer("ingestMemoryMb", 2048, minimum=512, maximum=10240)
    max_megapixels = reader.integer("maxImageMegapixels", 60, minimum=1, maximum=200)
    needed = _budget.max_image_cost(max_megapixels * 1_000_000)
    if not _budget.decode_budget_bytes(memory_mb) >= needed:
        # The function budgets decoded pixels at a share of its memory; the largest allowed image
        # (RGBA, 4 bytes per pixel) must fit, or valid images would be refused.
        share = _budget.DECODE_SHARE_PERCENT
        raise ConfigError(f"config {reader.key('ingestMemoryMb')}: {memory_mb} MB leaves a decode budget of "
                          f"{_budget.decode_budget_bytes(memory_mb) // _budget.MIB} MB ({share}%), under the "
                          f"{-(-needed // _budget.MIB)} MB a {max_megapixels} MP image "
                          f"({reader.key('maxImageMegapixels')}) needs; raise the memory or lower the limit")
    return IngestSettings(
        raw_prefix=raw_prefix,
        quarantine_prefix=quarantine_prefix,
        shard_prefix=reader.string("shardPrefix", "shards/", **prefix_rule),
        label_path_segment=reader.integer("labelPathSegment", 0, minimum=0, maximum=20),
        training_image_size=reader.integer("trainingImageSize", 512, minimum=32, maximum=4096),
        # Pillow advises against quality above 95 and the function refuses it at start-up.
        jpeg_quality=reader.integer("jpegQuality", 90, minimum=50, maximum=95),
        max_input_mb=reader.integer("maxImageMb", 50, minimum=1, maximum=500),
        max_megapixels=max_megapixels,
        # A photo has a few pixels per compressed byte; a 60 MP PNG of 7 KB (8,500 per byte) is a bomb.
        max_pixels_per_byte=reader.integer("maxImagePixelsPerByte", 1000, minimum=10, maximum=100_000),
        min_dimension=reader.integer("minImageDimension", 32, minimum=1, maximum=4096),
        allowed_formats=tuple(reader.string_list("allowedImageFormats", list(IMAGE_FORMATS), min_items=1,
                                                 item_check=lambda f: None if f in IMAGE_FORMATS else
                                                 f"{f!r} is not one of {', '.join(IMAGE_FORMATS)}")),
        memory_mb=memory_mb,
        architecture=reader.string("ingestArchitecture", "arm64", choices=ARCHITECTURES),
        timeout_s=timeout,
        batch_size=batch_size,
        batch_window_s=window,
        max_concurrency=max_concurrency,
        reserved_concurrency=reserved or None,
        max_receive_count=reader.integer("ingestMaxReceiveCount", 5, minimum=1, maximum=1000),
        workers=reader.integer("ingestWorkers", 4, minimum=1, maximum=16),
        log_level=reader.string("ingestLogLevel", "INFO", choices=LOG_LEVELS),
    )
