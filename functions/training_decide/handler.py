"""Training workflow, step 5: approve or reject the candidate from the evaluation report (contract 7).

Approved when the candidate's accuracy reaches the threshold and, when a production model was scored
on the same test split, is not below production's accuracy by more than the tolerance.
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from typing import Any, Optional
from urllib.parse import urlparse

import boto3

logger = logging.getLogger()


@lru_cache(maxsize=1)
def _s3():
    return boto3.client("s3")


def decide(report: dict[str, Any], threshold: float, tolerance: float) -> dict[str, Any]:
    candidate = float(report["candidate"]["accuracy"])
    production: Optional[float] = None
    if report.get("production"):
        production = float(report["production"]["accuracy"])
    if candidate < threshold:
        approved, reason = False, f"candidate accuracy {candidate:.4f} is below the threshold {threshold:.4f}"
    elif production is not None and candidate < production - tolerance:
        approved, reason = False, (f"candidate accuracy {candidate:.4f} is worse than production's {production:.4f} "
                                   f"by more than the tolerance {tolerance:.4f}")
    elif production is None:
        approved, reason = True, f"first model: accuracy {candidate:.4f} reaches the threshold {threshold:.4f}"
    else:
        approved, reason = True, (f"candidate accuracy {candidate:.4f} reaches the threshold and is within "
                                  f"{tolerance:.4f} of production's {production:.4f} or better")
    # Step Functions JSONPath needs every field present: -1 stands for "no production model".
    return {"approved": approved, "status": "approved" if approved else "rejected", "reason": reason,
            "candidate_accuracy": candidate, "production_accuracy": -1.0 if production is None else production}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    url = urlparse(event["evaluation_url"])
    report = json.loads(_s3().get_object(Bucket=url.netloc, Key=url.path.lstrip("/"))["Body"].read())
    result = decide(report, float(os.environ["APPROVAL_THRESHOLD"]), float(os.environ["APPROVAL_TOLERANCE"]))
    logger.info("decision", extra={"evaluation_url": event["evaluation_url"], **result})
    return result
