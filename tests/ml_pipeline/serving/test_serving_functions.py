"""The prediction and consumer functions' failure handling, with the endpoint replaced by a scripted stub.

GIVEN an endpoint that throttles, fails or rejects one input, WHEN a request or a batch arrives, THEN the
sync path retries inside its budget and answers 503/502/422 with the reason, and the consumer reports
only what may succeed later in batchItemFailures.
"""
from __future__ import annotations

import base64
import io
import json

import pytest
from botocore.exceptions import ClientError

from tests.ml_pipeline.serving import fakes
from tests.ml_pipeline.serving.test_inference_api import IMAGE, PREDICT_ENV

CONSUMER_ENV = {"LOG_LEVEL": "INFO", "ENDPOINT_NAME": "e", "RESULTS_TABLE": "predictions",
                "RESULT_TTL_SECONDS": "3600", "MAX_INSTANCES_PER_CALL": "32"}
POISON = base64.b64encode(b"poison").decode()


def _error(code: str, status: int = 400, original: int | None = None) -> ClientError:
    response = {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    if original:
        response["OriginalStatusCode"] = original
    return ClientError(response, "InvokeEndpoint")


class Runtime:
    """invoke_endpoint scripted by a list of errors to raise first; then one prediction per instance,
    refusing any batch that holds POISON (as a container refuses an undecodable image)."""

    def __init__(self, errors=()):
        self.errors = list(errors)
        self.calls = []

    def invoke_endpoint(self, **kwargs):
        instances = json.loads(kwargs["Body"])["instances"]
        self.calls.append(len(instances))
        if self.errors:
            raise self.errors.pop(0)
        if POISON in instances:
            raise _error("ModelError", 424, original=400)
        body = {"predictions": [{"label": "cat", "probability": 0.9} for _ in instances]}
        return {"Body": io.BytesIO(json.dumps(body).encode()), "InvokedProductionVariant": kwargs.get("TargetVariant", "champion")}


class Dynamo:
    def __init__(self):
        self.written = {}

    def batch_write_item(self, RequestItems, RawBody=None):
        if RawBody is not None:  # the consumer sends the body it encoded itself (batch_write)
            assert RequestItems == {"predictions": []}
            RequestItems = json.loads(RawBody)["RequestItems"]
        for put in RequestItems["predictions"]:
            item = put["PutRequest"]["Item"]
            self.written[item["request_id"]["S"]] = item
        return {"UnprocessedItems": {}}

    def get_item(self, **kwargs):
        return {"Item": {"champion_version": {"N": "3"}, "challenger_version": {"N": "4"}}}


class Budget:
    def __init__(self, ms):
        self.ms = ms

    def get_remaining_time_in_millis(self):
        return self.ms


@pytest.fixture
def predict(monkeypatch):
    module = fakes.load_function("serving_predict", PREDICT_ENV, monkeypatch)
    monkeypatch.setattr(module.time, "sleep", lambda s: None)
    module._clients["dynamodb"] = Dynamo()
    return module


@pytest.fixture
def consumer(monkeypatch):
    module = fakes.load_function("serving_consumer", CONSUMER_ENV, monkeypatch)
    monkeypatch.setattr(module.time, "sleep", lambda s: None)
    module._clients["dynamodb"] = Dynamo()
    return module


def _predict(module, budget_ms=3000, body=None):
    event = {"httpMethod": "POST", "resource": "/predict", "body": json.dumps(body or {"instances": [IMAGE]})}
    result = module.handler(event, Budget(budget_ms))
    return result["statusCode"], json.loads(result["body"])


def test_a_throttle_is_retried_and_then_served(predict):
    runtime = predict._clients["sagemaker-runtime"] = Runtime([_error("ThrottlingException"), _error("ThrottlingException")])
    status, body = _predict(predict)
    assert status == 200 and runtime.calls == [1, 1, 1] and body["model_version"] == 3


@pytest.mark.parametrize("code, http, original, expected, reason", [
    ("ThrottlingException", 400, None, 503, "throttling"),
    ("ModelNotReadyException", 429, None, 503, "unavailable"),
    ("ModelError", 424, 500, 502, "the model failed"),
])
def test_persistent_endpoint_trouble_answers_502_or_503_with_the_reason(predict, code, http, original, expected, reason):
    predict._clients["sagemaker-runtime"] = Runtime([_error(code, http, original)] * 10)
    status, body = _predict(predict)
    assert status == expected and reason in body["message"] and "attempts" in body["message"]


def test_retries_stop_at_the_time_budget(predict, monkeypatch):
    runtime = predict._clients["sagemaker-runtime"] = Runtime([_error("ThrottlingException")] * 10)
    status, _ = _predict(predict, budget_ms=310)  # 10 ms left after the response margin: no room to retry
    assert status == 503 and runtime.calls == [1]


def test_an_input_the_model_rejects_is_the_callers_fault(predict):
    predict._clients["sagemaker-runtime"] = Runtime()
    status, body = _predict(predict, body={"instances": [POISON]})
    assert status == 422 and "rejected" in body["message"]


def _data(payload) -> bytes:
    """The prediction function's record layout: a JSON header line, then the instances' JSON array."""
    if isinstance(payload, bytes):
        return payload
    header = {"request_id": payload["request_id"], "count": len(payload["instances"]), "received_at": 0}
    if "variant" in payload:
        header["variant"] = payload["variant"]
    return (json.dumps(header) + "\n" + json.dumps(payload["instances"])).encode()


def _records(*payloads):
    return {"Records": [{"kinesis": {"sequenceNumber": str(100 + i), "data": base64.b64encode(_data(p)).decode()}}
                        for i, p in enumerate(payloads)]}


def test_one_poison_request_fails_alone_and_the_rest_are_written_from_one_call(consumer):
    runtime = consumer._clients["sagemaker-runtime"] = Runtime()
    event = _records({"request_id": "a", "instances": [IMAGE, IMAGE]}, {"request_id": "b", "instances": [POISON]},
                     {"request_id": "c", "instances": [IMAGE]}, b"not json",
                     b'{"request_id": "d", "count": 1}\n"not an array"')
    assert consumer.handler(event, None) == {"batchItemFailures": []}
    written = consumer._clients["dynamodb"].written
    assert {k: v["status"]["S"] for k, v in written.items()} == {"a": "done", "b": "failed", "c": "done", "d": "failed"}
    assert len(json.loads(written["a"]["result"]["S"])["predictions"]) == 2
    assert runtime.calls[0] == 4, "the batch went to the endpoint as one call first"


def test_a_throttled_endpoint_reports_the_batch_for_retry_and_writes_nothing(consumer):
    consumer._clients["sagemaker-runtime"] = Runtime([_error("ThrottlingException")])
    event = _records({"request_id": "a", "instances": [IMAGE]}, {"request_id": "b", "instances": [IMAGE]})
    assert consumer.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "100"}, {"itemIdentifier": "101"}]}
    assert consumer._clients["dynamodb"].written == {}


def test_requests_for_different_variants_go_in_separate_calls(consumer):
    runtime = consumer._clients["sagemaker-runtime"] = Runtime()
    event = _records({"request_id": "a", "instances": [IMAGE]}, {"request_id": "b", "instances": [IMAGE], "variant": "challenger"})
    consumer.handler(event, None)
    results = {k: json.loads(v["result"]["S"])["variant"] for k, v in consumer._clients["dynamodb"].written.items()}
    assert results == {"a": "champion", "b": "challenger"} and runtime.calls == [1, 1]


class StubbornDynamo(Dynamo):
    """Leaves the listed request ids unprocessed on every call, or fails every call when ``down``."""

    def __init__(self, unprocessed=(), down=False):
        super().__init__()
        self.unprocessed, self.down, self.calls = set(unprocessed), down, 0

    def batch_write_item(self, RequestItems, RawBody=None):
        self.calls += 1
        if self.down:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "BatchWriteItem")
        puts = json.loads(RawBody)["RequestItems"]["predictions"]
        kept = [p for p in puts if p["PutRequest"]["Item"]["request_id"]["S"] in self.unprocessed]
        super().batch_write_item({"predictions": [p for p in puts if p not in kept]})
        return {"UnprocessedItems": {"predictions": kept} if kept else {}}


def test_results_dynamodb_leaves_unprocessed_are_retried_then_reported_alone(consumer):
    # GIVEN a table that keeps refusing b's result WHEN a batch of three is processed
    consumer._clients["sagemaker-runtime"] = Runtime()
    dynamo = consumer._clients["dynamodb"] = StubbornDynamo(unprocessed={"b"})
    event = _records(*({"request_id": r, "instances": [IMAGE]} for r in "abc"))
    # THEN only b goes back to the stream, after the bounded retries; a and c are written
    assert consumer.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    assert sorted(dynamo.written) == ["a", "c"] and dynamo.calls == 4


def test_a_results_table_that_never_answers_sends_every_record_back(consumer):
    consumer._clients["sagemaker-runtime"] = Runtime()
    consumer._clients["dynamodb"] = StubbornDynamo(down=True)
    event = _records({"request_id": "a", "instances": [IMAGE]}, {"request_id": "b", "instances": [POISON]})
    assert consumer.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "100"}, {"itemIdentifier": "101"}]}


def test_the_result_items_are_dynamodb_json_with_every_string_escaped(consumer):
    consumer._clients["sagemaker-runtime"] = Runtime()
    event = _records({"request_id": 'x"\\y', "instances": [IMAGE]})
    assert consumer.handler(event, None) == {"batchItemFailures": []}
    item = consumer._clients["dynamodb"].written['x"\\y']
    assert item["status"] == {"S": "done"} and int(item["expires_at"]["N"]) > 0
    assert json.loads(item["result"]["S"]) == {"predictions": [{"label": "cat", "probability": 0.9}], "variant": "champion"}


def _images():
    """Images whose sizes leave every remainder by 3 (the record's zero fill is 0, 2 or 1 bytes)."""
    return [bytes(range(256)) * 12 + b"\xff" * extra for extra in (0, 1, 2)]


def test_aligned_records_reach_the_endpoint_as_the_images_own_base64_beside_older_records(consumer, monkeypatch):
    # GIVEN records as the prediction function writes them (images on 3-byte boundaries, sliced from the
    # record's base64), one of several images, beside a record in the older JSON-array layout
    predict = fakes.load_function("serving_predict", PREDICT_ENV, monkeypatch)
    images = [base64.b64encode(i).decode() for i in _images()]
    aligned = [predict.stream_record({"request_id": f"r{n}", "received_at": 0, "count": 1}, [image])
               for n, image in enumerate(images)]
    aligned.append(predict.stream_record({"request_id": "many", "received_at": 0, "count": 3}, images))
    runtime = consumer._clients["sagemaker-runtime"] = Runtime()
    sent = []
    invoke = runtime.invoke_endpoint
    runtime.invoke_endpoint = lambda **kw: sent.append(json.loads(kw["Body"])["instances"]) or invoke(**kw)
    # WHEN the consumer reads the batch
    event = _records(*aligned, {"request_id": "old", "instances": [IMAGE]})
    assert consumer.handler(event, None) == {"batchItemFailures": []}
    # THEN the endpoint gets each image's exact base64 in one call, and every request has its result
    assert sent == [images + images + [IMAGE]]
    written = consumer._clients["dynamodb"].written
    assert {k: (v["status"]["S"], len(json.loads(v["result"]["S"])["predictions"])) for k, v in written.items()} == {
        "r0": ("done", 1), "r1": ("done", 1), "r2": ("done", 1), "many": ("done", 3), "old": ("done", 1)}


@pytest.mark.parametrize("damage", ["truncated", "sizes", "count", "unaligned", "quote"])
def test_an_aligned_record_that_does_not_add_up_fails_alone(consumer, monkeypatch, damage):
    predict = fakes.load_function("serving_predict", PREDICT_ENV, monkeypatch)
    image = base64.b64encode(_images()[1]).decode()
    header = {"request_id": "bad", "received_at": 0, "count": 1}
    record = predict.stream_record(header, [image])
    if damage == "truncated":
        record = record[:-3]
    elif damage == "sizes":
        record = record.replace(b'"sizes":[', b'"sizes":[7,', 1)
    elif damage == "count":
        record = predict.stream_record({**header, "count": 2}, [image])
    elif damage == "unaligned":
        record = record.replace(b"\n", b" \n", 1)
    text = base64.b64encode(record).decode()
    if damage == "quote":
        text = text[:-8] + '"' + text[-7:]
    event = {"Records": [{"kinesis": {"sequenceNumber": "1", "data": text}}]}
    event["Records"] += _records({"request_id": "good", "instances": [IMAGE]})["Records"]
    consumer._clients["sagemaker-runtime"] = Runtime()
    assert consumer.handler(event, None) == {"batchItemFailures": []}
    written = consumer._clients["dynamodb"].written
    assert (written["bad"]["status"]["S"], written["good"]["status"]["S"]) == ("failed", "done")
    assert written["bad"]["error"]["S"].startswith("unreadable request")


def test_endpoint_calls_hold_at_most_the_configured_instances(monkeypatch):
    # GIVEN asyncInvokeBatchSize 3 (the stack passes it as MAX_INSTANCES_PER_CALL) WHEN 8 images arrive
    consumer = fakes.load_function("serving_consumer", {**CONSUMER_ENV, "MAX_INSTANCES_PER_CALL": "3"}, monkeypatch)
    consumer._clients["dynamodb"] = Dynamo()
    runtime = consumer._clients["sagemaker-runtime"] = Runtime()
    event = _records({"request_id": "pair", "instances": [IMAGE, IMAGE]},
                     *({"request_id": f"r{i}", "instances": [IMAGE]} for i in range(6)))
    assert consumer.handler(event, None) == {"batchItemFailures": []}
    # THEN the calls take 3 at most, a request's images never split across calls
    assert runtime.calls == [3, 3, 2] and len(consumer._clients["dynamodb"].written) == 7
