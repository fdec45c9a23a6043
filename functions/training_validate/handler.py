"""Training workflow, step 1: are there enough labelled, balanced images in the window, and little quarantine?

Reads the per-day statistics items ingestion keeps in the catalog (contract 3: ``stats#YYYY-MM-DD`` /
``#totals``, ``ADD``-ed once per batch), never the catalog itself. Returns the verdict and its reason;
the state machine stops the run on ``ok: false``.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from functools import lru_cache
from typing import Any, Iterable, Optional

import boto3

logger = logging.getLogger()
STATS_KEY = "#totals"
LABEL_PREFIX = "label:"


@lru_cache(maxsize=1)
def _dynamodb():
    return boto3.client("dynamodb")


def window(end: dt.date, days: int) -> list[str]:
    """The ``days`` dates ending with ``end``, oldest first."""
    return [(end - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def summarize(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Plain-number statistics items (already deserialized) summed over the window."""
    totals = {"accepted": 0, "rejected": 0, "unlabelled": 0}
    labels: dict[str, int] = {}
    for item in items:
        for name, value in item.items():
            if name in totals:
                totals[name] += int(value)
            elif name.startswith(LABEL_PREFIX):
                label = name[len(LABEL_PREFIX):]
                labels[label] = labels.get(label, 0) + int(value)
    return {**totals, "labels": dict(sorted(labels.items())), "labelled": sum(labels.values())}


def verdict(summary: dict[str, Any], min_images: int, min_class_share: float,
            max_quarantine_rate: float) -> tuple[bool, str]:
    labelled, labels = summary["labelled"], summary["labels"]
    seen = summary["accepted"] + summary["rejected"]
    rate = summary["rejected"] / seen if seen else 0.0
    if labelled < min_images:
        return False, f"{labelled} labelled images in the window, fewer than the {min_images} required"
    if len(labels) < 2:
        return False, f"only {len(labels)} class in the window ({', '.join(labels) or 'none'}); a classifier needs two"
    rare = {k: v / labelled for k, v in labels.items() if v / labelled < min_class_share}
    if rare:
        worst = min(rare, key=rare.get)
        return False, (f"class {worst!r} holds {rare[worst]:.2%} of the labelled images, under the "
                       f"{min_class_share:.2%} minimum ({len(rare)} class(es) under it)")
    if rate > max_quarantine_rate:
        return False, f"quarantine rate {rate:.2%} is over the {max_quarantine_rate:.2%} maximum"
    return True, f"{labelled} labelled images in {len(labels)} classes, quarantine rate {rate:.2%}"


def _read_stats(table: str, dates: list[str]) -> list[dict[str, Any]]:
    keys = [{"partition_date": {"S": f"stats#{d}"}, "image_id": {"S": STATS_KEY}} for d in dates]
    found: list[dict[str, Any]] = []
    # BatchGetItem takes 100 keys; the window is at most 90 days. Unprocessed keys are asked again.
    request = {table: {"Keys": keys}}
    while request:
        answer = _dynamodb().batch_get_item(RequestItems=request)
        for item in answer.get("Responses", {}).get(table, []):
            found.append({k: v["N"] for k, v in item.items() if "N" in v})
        request = answer.get("UnprocessedKeys") or {}
    return found


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run_input = event.get("input") or {}
    end: Optional[str] = run_input.get("end_date")
    # Default: the full days before today; today's statistics are still growing.
    end_date = dt.date.fromisoformat(end) if end else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    dates = window(end_date, int(os.environ["WINDOW_DAYS"]))
    summary = summarize(_read_stats(os.environ["CATALOG_TABLE"], dates))
    ok, reason = verdict(summary, int(os.environ["MIN_IMAGES"]), float(os.environ["MIN_CLASS_SHARE"]),
                         float(os.environ["MAX_QUARANTINE_RATE"]))
    logger.info("data check", extra={"run_id": event.get("run_id"), "ok": ok, "reason": reason,
                                     "labelled": summary["labelled"], "first_day": dates[0], "last_day": dates[-1]})
    return {"ok": ok, "reason": reason, "days": dates, **summary}
