"""Stream consumer: batches of async prediction requests -> the endpoint -> the results table.

Records are grouped by target variant and sent in as few endpoint calls as the container accepts (it takes
a batch of instances, contract 5); the predictions are split back per request and written with
BatchWriteItem. A record that can never succeed (unparseable, or an input the model rejects) gets a
``failed`` result and is not retried; what may succeed later (endpoint throttles or faults, unwritten
results) is reported in ``batchItemFailures``, so Lambda retries from there (bisecting, capped retries and
record age, then the on-failure queue): one poison record never blocks its shard.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import time
from binascii import a2b_base64

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger()
logger.setLevel(os.environ["LOG_LEVEL"])

ENDPOINT_NAME = os.environ["ENDPOINT_NAME"]
RESULTS_TABLE = os.environ["RESULTS_TABLE"]
RESULT_TTL_SECONDS = int(os.environ["RESULT_TTL_SECONDS"])
MAX_INSTANCES_PER_CALL = int(os.environ["MAX_INSTANCES_PER_CALL"])
# SageMaker's real-time payload limit is 6 MB.
MAX_PAYLOAD_BYTES = 5_500_000
WRITE_BATCH = 25
# One encoder for every dump: json.dumps (and JSONEncoder.encode for a list) builds a new encoder per call.
# The C encoder is made once here, as JSONEncoder.iterencode makes it (compact separators, ASCII output, no
# circular-reference markers: what is encoded comes from json.loads or is text, never circular); a string
# goes straight to the C function JSONEncoder.encode calls for one. Same text as json.dumps either way.
_encode_str = json.encoder.encode_basestring_ascii
if json.encoder.c_make_encoder is not None:
    _iterencode = json.encoder.c_make_encoder(None, None, _encode_str, None, ":", ",", False, False, True)

    def _encode(value) -> str:
        return _encode_str(value) if isinstance(value, str) else "".join(_iterencode(value, 0))
else:  # pragma: no cover - CPython always has the C encoder
    _encode = json.JSONEncoder(separators=(",", ":")).encode
_decode = json.JSONDecoder().decode

_clients: dict[str, object] = {}


def _client(name: str):
    client = _clients.get(name)
    if client is None:
        client = _clients[name] = boto3.client(name, config=Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=30, tcp_keepalive=True,
            # The requests are built here, well-formed; validating 500 result items per batch costs a fifth of the CPU.
            parameter_validation=False))
        if name == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", _take_raw_body)
            client.meta.events.register("before-call.dynamodb.BatchWriteItem", _send_raw_body)
        # botocore's models and the client are long-lived: out of the cyclic collector's sight, the full
        # collections a batch's allocations trigger no longer walk them (a few percent of a batch's CPU).
        gc.freeze()
    return client


# BatchWriteItem's body is sent as this function writes it: each item is DynamoDB JSON text (the wire
# format, see put_request), which replaces botocore's walk of the model for each attribute (a third of a
# write's CPU). The call names the table with an empty item list (what the request is signed and
# recorded for); the body replaces that request's body before it is signed.
RAW_BODY = "RawBody"


def _take_raw_body(params, context, **kwargs):
    if RAW_BODY in params:
        context[RAW_BODY] = params.pop(RAW_BODY)


def _send_raw_body(params, context, **kwargs):
    if RAW_BODY in context:
        params["body"] = context[RAW_BODY]


def batch_write(puts: list) -> list:
    """One BatchWriteItem of up to 25 PutRequests (JSON text, or the dicts DynamoDB returned unprocessed);
    returns the unprocessed ones."""
    body = ('{"RequestItems":{' + _encode(RESULTS_TABLE) + ":["
            + ",".join(p if isinstance(p, str) else _encode(p) for p in puts) + "]}}").encode()
    answer = _client("dynamodb").batch_write_item(RequestItems={RESULTS_TABLE: []}, RawBody=body)
    return answer.get("UnprocessedItems", {}).get(RESULTS_TABLE, [])


class Request:
    __slots__ = ("sequence", "request_id", "instances", "count", "variant", "status", "result", "error", "retry")

    def __init__(self, sequence: str):
        self.sequence = sequence
        self.request_id = None
        self.instances = b""  # the JSON array's items, as text (``a","b``), never decoded here
        self.count = 0
        self.variant = None
        self.status = "done"
        self.result = None
        self.error = None
        self.retry = False


# The first base64 characters of a record decoded to find its header line (a multiple of 4: whole groups).
HEAD_CHARS = 1024


def parse(record: dict) -> Request:
    """A record is a JSON header line (request_id, count, variant), then the instances (the prediction
    function's ``stream_record``): with ``sizes`` in the header, each image's bytes on a 3-byte boundary, so
    each one's base64 text is a slice of the record's (``_aligned``); without, a JSON array of base64 text
    (records written before that layout, read as they are)."""
    request = Request(record["kinesis"]["sequenceNumber"])
    try:
        text = record["kinesis"]["data"]
        whole = len(text) <= HEAD_CHARS
        data = a2b_base64(text[:HEAD_CHARS])
        cut = data.find(b"\n")
        if cut < 0 and not whole:
            whole, data = True, a2b_base64(text)
            cut = data.index(b"\n")
        header = _decode(data[:cut].decode())
        request.request_id, request.count, request.variant = header["request_id"], header["count"], header.get("variant")
        if not isinstance(request.request_id, str) or not isinstance(request.count, int) or request.count < 1:
            raise ValueError("request_id and a positive count are required")
        if "sizes" in header:
            request.instances = _aligned(text.encode("ascii"), cut + 1, header["sizes"], request.count)
        else:
            if not whole:
                data = a2b_base64(text)
            end = len(data.rstrip())
            if data[cut + 1:cut + 2] != b"[" or data[end - 1:end] != b"]":
                raise ValueError("the instances are not a JSON array")
            # A view, not a copy: the array's items go into the endpoint call's body as they are.
            request.instances = memoryview(data)[cut + 2:end - 1]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # binascii.Error, UnicodeError: ValueErrors
        request.status, request.error = "failed", f"unreadable request: {exc}"
    return request


def _aligned(text: bytes, start: int, sizes, count: int) -> bytes:
    """The images' base64 text as JSON array items (``"a","b"``), sliced from the record's base64 ``text``:
    the image parts start at byte ``start`` of the record, each zero-filled to a multiple of 3 bytes, so an
    image of ``size`` bytes is the next ``ceil(size / 3) * 4`` characters, of which the last one or two (the
    fill's) read ``=`` in the image's own base64."""
    if start % 3 or not isinstance(sizes, list) or len(sizes) != count:
        raise ValueError("the header's sizes do not describe the instances")
    if b'"' in text or b"\\" in text:
        raise ValueError("the record is not base64 text")
    items, pos = [], start // 3 * 4
    for size in sizes:
        if not isinstance(size, int) or size < 1:
            raise ValueError("the header's sizes do not describe the instances")
        fill = -size % 3
        begin, pos = pos, pos + (size + fill) // 3 * 4
        items.append(text[begin:pos - fill] + b"=" * fill if fill else text[begin:pos])
    if pos != len(text):
        raise ValueError(f"the record holds {len(text)} base64 characters, its sizes say {pos}")
    return b'"' + b'","'.join(items) + b'"'


def _chunks(requests: list[Request]):
    """Consecutive requests whose instances fit one endpoint call."""
    chunk, count, size = [], 0, 0
    for request in requests:
        need, weight = request.count, len(request.instances)
        if chunk and (count + need > MAX_INSTANCES_PER_CALL or size + weight > MAX_PAYLOAD_BYTES):
            yield chunk
            chunk, count, size = [], 0, 0
        chunk.append(request)
        count += need
        size += weight
    if chunk:
        yield chunk


def _invoke(chunk: list[Request], variant: str | None) -> tuple[list, str]:
    kwargs = {"EndpointName": ENDPOINT_NAME, "ContentType": "application/json", "Accept": "application/json",
              "Body": b'{"instances":[' + b",".join(r.instances for r in chunk) + b"]}"}
    if variant:
        kwargs["TargetVariant"] = variant
    answer = _client("sagemaker-runtime").invoke_endpoint(**kwargs)
    predictions = json.loads(answer["Body"].read())["predictions"]
    expected = sum(r.count for r in chunk)
    if len(predictions) != expected:
        raise ValueError(f"{len(predictions)} predictions for {expected} instances")
    return predictions, answer.get("InvokedProductionVariant", variant or "")


def _rejected(exc: ClientError) -> bool:
    return exc.response["Error"].get("Code") == "ModelError" and 400 <= int(exc.response.get("OriginalStatusCode") or 0) < 500


def predict(chunk: list[Request], variant: str | None) -> None:
    try:
        predictions, served_by = _invoke(chunk, variant)
    except ClientError as exc:
        if _rejected(exc) and len(chunk) > 1:
            # One request's input spoils the batch: ask per request to find it.
            for request in chunk:
                predict([request], variant)
            return
        for request in chunk:
            if _rejected(exc):
                request.status, request.error = "failed", f"the model rejected the input: {exc.response['Error'].get('Message', '')[:300]}"
            else:
                request.retry = True
        return
    except (BotoCoreError, ValueError, KeyError) as exc:
        logger.warning("endpoint call failed", extra={"error": str(exc), "requests": len(chunk)})
        for request in chunk:
            request.retry = True
        return
    start, tail = 0, ',"variant":' + _encode(served_by) + "}"
    for request in chunk:
        end = start + request.count
        # The result as the JSON text GET /predictions/{id} merges into its answer.
        request.result = '{"predictions":' + _encode(predictions[start:end]) + tail
        start = end


def put_request(r: Request, expires: str) -> str:
    """The PutRequest of a request's result item as DynamoDB JSON text; every string through the encoder.
    Four attributes at most: each one is a share of the write's CPU."""
    parts = ['{"PutRequest":{"Item":{"request_id":{"S":', _encode_str(r.request_id), '},"status":{"S":',
             _encode_str(r.status), '},"expires_at":{"N":"', expires, '"}']
    if r.result is not None:
        parts += [',"result":{"S":', _encode_str(r.result), "}"]
    if r.error:
        parts += [',"error":{"S":', _encode_str(r.error), "}"]
    parts.append("}}}")
    return "".join(parts)


def write(requests: list[Request], now: int) -> None:
    expires = str(now + RESULT_TTL_SECONDS)
    items = [(r, put_request(r, expires)) for r in requests]
    for start in range(0, len(items), WRITE_BATCH):
        batch = items[start:start + WRITE_BATCH]
        pending = [put for _, put in batch]
        for attempt in range(4):
            try:
                pending = batch_write(pending)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("result write failed", extra={"error": str(exc)})
            if not pending:
                break
            time.sleep(0.05 * 2 ** attempt)
        if pending:
            # Text when no call answered at all; DynamoDB's unprocessed items (dicts) otherwise.
            unsent = {p for p in pending if isinstance(p, str)}
            unwritten = {p["PutRequest"]["Item"]["request_id"]["S"] for p in pending if not isinstance(p, str)}
            for request, put in batch:
                if put in unsent or request.request_id in unwritten:
                    request.retry = True


def handler(event: dict, context) -> dict:
    requests = [parse(r) for r in event.get("Records", [])]
    readable = [r for r in requests if r.status != "failed"]
    by_variant: dict = {}
    for request in readable:
        by_variant.setdefault(request.variant, []).append(request)
    for variant, group in by_variant.items():
        for chunk in _chunks(group):
            predict(chunk, variant)
    now = int(time.time())
    writable = [r for r in requests if r.request_id and not r.retry]
    write(writable, now)
    unreadable = [r for r in requests if not r.request_id]
    if unreadable:
        # Nothing to write them under: logged with their position and dropped (retrying cannot help).
        logger.error("unreadable records skipped", extra={"sequence_numbers": [r.sequence for r in unreadable]})
    failures = [{"itemIdentifier": r.sequence} for r in requests if r.retry]
    if failures:
        logger.warning("records to retry", extra={"count": len(failures), "of": len(requests)})
    return {"batchItemFailures": failures}
