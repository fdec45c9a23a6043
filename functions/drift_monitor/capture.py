"""SageMaker data capture: where a period's files are, and the images and predictions in one line.

Capture files are JSON Lines under ``<prefix><endpoint>/<variant>/yyyy/mm/dd/hh/``; each line holds
``captureData.endpointInput`` and ``endpointOutput`` with ``data`` and ``encoding`` (BASE64, JSON or
CSV; JSON when the content type is listed in the capture's JsonContentTypes). Requests are contract
5: ``application/json`` ``{"instances": ["<base64 image>", ...]}`` or one raw image
(``application/x-image``); responses ``{"predictions": [{"label": ..., ...}]}``.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass


class BadCapture(ValueError):
    """A capture line this function cannot read; counted and skipped."""


@dataclass(frozen=True)
class Captured:
    images: list[bytes]
    labels: list[str]


def hour_prefixes(prefix: str, endpoint: str, variant: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    """The hourly folders that may hold captures made in [start, end) (UTC)."""
    hour = start.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    folders = []
    while hour < end:
        folders.append(f"{prefix}{endpoint}/{variant}/{hour:%Y/%m/%d/%H}/")
        hour += dt.timedelta(hours=1)
    return folders


def _payload(part: object, name: str) -> tuple[bytes, str]:
    if not isinstance(part, dict) or not isinstance(part.get("data"), str):
        raise BadCapture(f"{name} has no data")
    encoding = str(part.get("encoding", "")).upper()
    content_type = str(part.get("observedContentType", "")).split(";")[0].strip().lower()
    if encoding == "BASE64":
        try:
            return base64.b64decode(part["data"], validate=True), content_type
        except (binascii.Error, ValueError) as exc:
            raise BadCapture(f"{name} is not base64: {exc}") from None
    if encoding in ("JSON", "CSV"):
        return part["data"].encode(), content_type or "application/json"
    raise BadCapture(f"{name} has encoding {encoding!r}")


def _json(raw: bytes, name: str) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadCapture(f"{name} is not JSON: {exc}") from None


def parse_line(line: str | bytes) -> Captured:
    """The request's images and the predicted labels of one capture line; raises BadCapture."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadCapture(f"line is not JSON: {exc}") from None
    data = record.get("captureData") if isinstance(record, dict) else None
    if not isinstance(data, dict):
        raise BadCapture("no captureData")
    body, content_type = _payload(data.get("endpointInput"), "endpointInput")
    if content_type == "application/json" or content_type.endswith("+json"):
        request = _json(body, "endpointInput")
        instances = request.get("instances") if isinstance(request, dict) else None
        if not isinstance(instances, list) or not all(isinstance(i, str) for i in instances):
            raise BadCapture("endpointInput has no instances list")
        try:
            images = [base64.b64decode(i, validate=True) for i in instances]
        except (binascii.Error, ValueError) as exc:
            raise BadCapture(f"an instance is not base64: {exc}") from None
    else:
        images = [body]
    out, _ = _payload(data.get("endpointOutput"), "endpointOutput")
    response = _json(out, "endpointOutput")
    predictions = response.get("predictions") if isinstance(response, dict) else None
    if not isinstance(predictions, list) or not all(isinstance(p, dict) and isinstance(p.get("label"), str)
                                                    for p in predictions):
        raise BadCapture("endpointOutput has no predictions with labels")
    if len(predictions) != len(images):
        raise BadCapture(f"{len(images)} images but {len(predictions)} predictions")
    return Captured(images, [p["label"] for p in predictions])
