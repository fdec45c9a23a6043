"""Inference routes: POST /predict (synchronous), POST /predict/async (to the stream), GET /predictions/{id}.

The endpoint splits traffic between ``champion`` and ``challenger`` by weight; a ``variant`` field targets
one. Which version each variant serves comes from the A/B table's ``current`` item, cached for
CACHE_SECONDS (never a table read per request). Endpoint throttles and faults are retried with backoff
inside the function's time budget, then answered 503 (unavailable, throttled) or 502 (the model failed).
Malformed or oversized requests get a 4xx with the reason.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import random
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger()
logger.setLevel(os.environ["LOG_LEVEL"])

ENDPOINT_NAME = os.environ["ENDPOINT_NAME"]
AB_TABLE = os.environ["AB_TABLE"]
RESULTS_TABLE = os.environ["RESULTS_TABLE"]
STREAM_NAME = os.environ["STREAM_NAME"]
MAX_REQUEST_BYTES = int(os.environ["MAX_REQUEST_BYTES"])
CACHE_SECONDS = float(os.environ["CACHE_SECONDS"])
RESULT_TTL_SECONDS = int(os.environ["RESULT_TTL_SECONDS"])
VARIANTS = ("champion", "challenger")
MAX_INSTANCES = 64
# A Kinesis record holds at most 1 MiB (data and partition key).
MAX_ASYNC_BYTES = 1_000_000
# Answer before API Gateway's 29 s integration timeout and the function's own timeout.
RESPONSE_MARGIN_MS = 300
JSON_HEADERS = {"Content-Type": "application/json"}
RETRYABLE = {"ThrottlingException": 503, "ServiceUnavailable": 503, "ServiceUnavailableException": 503,
             "ModelNotReadyException": 503, "InternalFailure": 502, "InternalDependencyException": 502}

_clients: dict[str, object] = {}
_serving: dict = {"at": float("-inf"), "versions": {}}


def _client(name: str):
    client = _clients.get(name)
    if client is None:
        # No retries inside botocore: the handler retries with its own budget and backoff.
        client = _clients[name] = boto3.client(name, config=Config(
            retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=25,
            # The handler validates what it sends; botocore's second check costs a tenth of a request.
            tcp_keepalive=True, parameter_validation=False))
    return client


class HttpError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _response(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": JSON_HEADERS, "body": json.dumps(body, separators=(",", ":"))}


def variant_versions(now: float) -> dict[str, int]:
    """Which version each variant serves, from the A/B table, refreshed every CACHE_SECONDS."""
    if now - _serving["at"] >= CACHE_SECONDS:
        try:
            item = _client("dynamodb").get_item(TableName=AB_TABLE, Key={
                "endpoint_name": {"S": ENDPOINT_NAME}, "record": {"S": "current"}}).get("Item") or {}
            _serving["versions"] = {v: int(item[f"{v}_version"]["N"]) for v in VARIANTS if f"{v}_version" in item}
        except (ClientError, BotoCoreError) as exc:
            # Keep serving with the last known answer; the version is informational.
            logger.warning("serving lookup failed", extra={"error": str(exc)})
        _serving["at"] = now
    return _serving["versions"]


def parse_request(event: dict, limit: int) -> tuple[list[str], str | None]:
    raw = event.get("body")
    if raw is None:
        raise HttpError(400, "a JSON body is required")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HttpError(400, "the body is not valid base64 text") from None
    if len(raw) > limit:
        raise HttpError(413, f"the request is {len(raw)} bytes; at most {limit} are accepted here")
    try:
        body = json.loads(raw)
    except ValueError:
        raise HttpError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    unknown = set(body) - {"instances", "variant"}
    if unknown:
        raise HttpError(400, f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    instances = body.get("instances")
    if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_INSTANCES:
        raise HttpError(400, f"instances must be a list of 1 to {MAX_INSTANCES} base64-encoded images")
    for i, item in enumerate(instances):
        if not isinstance(item, str) or not item:
            raise HttpError(400, f"instances[{i}] must be a non-empty base64 string")
        try:
            base64.b64decode(item, validate=True)
        except binascii.Error:
            raise HttpError(400, f"instances[{i}] is not valid base64") from None
    variant = body.get("variant")
    if variant is not None and variant not in VARIANTS:
        raise HttpError(400, f"variant must be one of {', '.join(VARIANTS)}")
    return instances, variant


def invoke(payload: bytes, variant: str | None, deadline: float) -> tuple[dict, str]:
    """The endpoint's answer and the variant that served it; retries within ``deadline`` (monotonic s)."""
    kwargs = {"EndpointName": ENDPOINT_NAME, "ContentType": "application/json", "Accept": "application/json",
              "Body": payload}
    if variant:
        kwargs["TargetVariant"] = variant
    attempt = 0
    while True:
        attempt += 1
        try:
            answer = _client("sagemaker-runtime").invoke_endpoint(**kwargs)
            return json.loads(answer["Body"].read()), answer.get("InvokedProductionVariant", variant or "")
        except ClientError as exc:
            error = exc.response["Error"]
            code, message = error.get("Code", ""), error.get("Message", "")
            if code == "ModelError":
                original = int(exc.response.get("OriginalStatusCode") or 0)
                if 400 <= original < 500:
                    # The container refused the input (an image it cannot decode): the caller's fault.
                    raise HttpError(422, f"the model rejected the input: {message[:300]}") from None
                status, reason = 502, f"the model failed: {message[:300]}"
            elif code == "ValidationException":
                raise HttpError(503, f"the endpoint cannot serve now (not deployed or updating): {message[:300]}") from None
            elif code in RETRYABLE:
                status, reason = RETRYABLE[code], f"the endpoint is {'throttling' if code == 'ThrottlingException' else 'unavailable'}: {code}"
            else:
                status, reason = 502, f"the endpoint call failed: {code}"
        except (BotoCoreError, ValueError) as exc:
            status, reason = 502, f"the endpoint call failed: {type(exc).__name__}"
        pause = min(2.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if time.monotonic() + pause >= deadline or attempt >= 6:
            raise HttpError(status, f"{reason} (after {attempt} attempts)")
        time.sleep(pause)


def predict(event: dict, context) -> dict:
    started = time.monotonic()
    remaining_ms = context.get_remaining_time_in_millis() if context is not None else 25_000
    deadline = started + (remaining_ms - RESPONSE_MARGIN_MS) / 1000
    instances, variant = parse_request(event, MAX_REQUEST_BYTES)
    body = json.dumps({"instances": instances}, separators=(",", ":")).encode()
    answer, served_by = invoke(body, variant, deadline)
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        raise HttpError(502, "the model's answer has no predictions list")
    version = variant_versions(started).get(served_by)
    return _response(200, {"predictions": predictions, "model_version": version, "variant": served_by})


def stream_record(header: dict, instances: list[str]) -> bytes:
    """The record the consumer reads: a JSON header line (with ``sizes``, the images' byte lengths) padded
    with spaces to a multiple of 3 bytes, then each image's bytes, zero-filled to a multiple of 3. Lambda
    hands the consumer the record as base64 text; as every part starts on a 3-byte boundary, each image's
    base64 text is a slice of it (its last one or two ``A``s read ``=``), so the consumer forwards the images
    to the endpoint without decoding them. The instances were validated as base64 by ``parse_request``."""
    images = [base64.b64decode(item) for item in instances]
    line = json.dumps({**header, "sizes": [len(image) for image in images]}, separators=(",", ":"))
    parts = [(line + " " * (-(len(line) + 1) % 3) + "\n").encode()]
    for image in images:
        parts += [image, b"\0" * (-len(image) % 3)]
    return b"".join(parts)


def predict_async(event: dict, context) -> dict:
    instances, variant = parse_request(event, min(MAX_REQUEST_BYTES, MAX_ASYNC_BYTES - 1000))
    request_id = uuid.uuid4().hex
    now = int(time.time())
    header = {"request_id": request_id, "received_at": now, "count": len(instances)}
    if variant:
        header["variant"] = variant
    try:
        # The status item first, so GET /predictions/{id} answers "queued" from the moment it returns.
        _client("dynamodb").put_item(TableName=RESULTS_TABLE, Item={
            "request_id": {"S": request_id}, "status": {"S": "queued"}, "received_at": {"N": str(now)},
            "expires_at": {"N": str(now + RESULT_TTL_SECONDS)}})
        _client("kinesis").put_record(StreamName=STREAM_NAME, PartitionKey=request_id, Data=stream_record(header, instances))
    except ClientError as exc:
        code = exc.response["Error"].get("Code", "")
        throttled = code in ("ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException")
        raise HttpError(503 if throttled else 502, f"the request could not be queued: {code}") from None
    return _response(202, {"request_id": request_id, "status": "queued"})


def get_prediction(event: dict, context) -> dict:
    request_id = (event.get("pathParameters") or {}).get("id") or ""
    if not (len(request_id) == 32 and all(c in "0123456789abcdef" for c in request_id)):
        raise HttpError(400, "the id is a request id returned by POST /predict/async (32 hex characters)")
    try:
        item = _client("dynamodb").get_item(TableName=RESULTS_TABLE, Key={"request_id": {"S": request_id}},
                                            ConsistentRead=True).get("Item")
    except ClientError as exc:
        raise HttpError(503, f"the result store is unavailable: {exc.response['Error'].get('Code', '')}") from None
    if item is None:
        raise HttpError(404, "no such request (unknown, or its result expired)")
    body = {"request_id": request_id, "status": item["status"]["S"]}
    if "result" in item:
        body.update(json.loads(item["result"]["S"]))
    if "error" in item:
        body["error"] = item["error"]["S"]
    return _response(200, body)


ROUTES = {("POST", "/predict"): predict, ("POST", "/predict/async"): predict_async,
          ("GET", "/predictions/{id}"): get_prediction}


def handler(event: dict, context) -> dict:
    route = ROUTES.get((event.get("httpMethod"), event.get("resource")))
    try:
        if route is None:
            raise HttpError(404, "no such route")
        return route(event, context)
    except HttpError as exc:
        if exc.status >= 500:
            logger.error("request failed", extra={"status": exc.status, "reason": exc.reason})
        return _response(exc.status, {"message": exc.reason})
