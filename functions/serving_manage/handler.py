"""Management routes of the inference API (operator role only): versions, A/B tests, weights, promote, roll back.

Weights change with UpdateEndpointWeightsAndCapacities (no redeploy); every change is written to the
A/B table's ``current`` item (what the endpoint serves) and appended as a ``history#`` item. Promotion
is a weight shift: the challenger takes all traffic, its version becomes production and the old one
retired (the rollback target). Rollback starts the deployment workflow.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(os.environ["LOG_LEVEL"])

VERSIONS_TABLE = os.environ["VERSIONS_TABLE"]
AB_TABLE = os.environ["AB_TABLE"]
ENDPOINT_NAME = os.environ["ENDPOINT_NAME"]
MODEL_NAME = os.environ["MODEL_NAME"]
STATE_MACHINE_ARN = os.environ["STATE_MACHINE_ARN"]
VARIANTS = ("champion", "challenger")
MAX_BODY = 16 * 1024

_clients: dict[str, object] = {}


def _resource(name: str):
    if name not in _clients:
        _clients[name] = boto3.resource("dynamodb").Table(name)
    return _clients[name]


def _client(name: str):
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


class HttpError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _response(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _body(event: dict) -> dict:
    raw = event.get("body") or "{}"
    if len(raw) > MAX_BODY:
        raise HttpError(413, f"request body over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (TypeError, ValueError):
        raise HttpError(400, "request body is not JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "request body must be a JSON object")
    return body


def _weight(body: dict, key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise HttpError(400, f"{key} must be a number from 0 to 1")
    # Four decimals: SageMaker's weights are relative, and DynamoDB numbers cannot hold 5e-324.
    return round(float(value), 4)


def current() -> dict:
    item = _resource(AB_TABLE).get_item(Key={"endpoint_name": ENDPOINT_NAME, "record": "current"},
                                        ConsistentRead=True).get("Item")
    if item is None:
        raise HttpError(409, "nothing is deployed yet: run the deployment workflow first")
    return item


def _history(event: str, **fields) -> None:
    at = _now()
    _resource(AB_TABLE).put_item(Item={"endpoint_name": ENDPOINT_NAME, "record": f"history#{at}#{uuid.uuid4().hex[:8]}",
                                       "event": event, "at": at, **fields})


def set_weights(champion: float, challenger: float, *, event: str, extra: dict | None = None) -> dict:
    if champion + challenger <= 0:
        raise HttpError(400, "at least one weight must be above 0")
    serving = current()
    try:
        _client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName=ENDPOINT_NAME, DesiredWeightsAndCapacities=[
                {"VariantName": "champion", "DesiredWeight": champion},
                {"VariantName": "challenger", "DesiredWeight": challenger}])
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        # An endpoint that is still updating refuses new weights: a conflict to retry, not a server fault.
        raise HttpError(409 if code == "ValidationException" else 503, f"SageMaker refused the weights: "
                        f"{exc.response['Error'].get('Message', code)}") from None
    updates = {"champion_weight": Decimal(str(champion)), "challenger_weight": Decimal(str(challenger)),
               "updated_at": _now(), **(extra or {})}
    names = {f"#{k}": k for k in updates}
    _resource(AB_TABLE).update_item(
        Key={"endpoint_name": ENDPOINT_NAME, "record": "current"},
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in updates),
        ExpressionAttributeNames=names, ExpressionAttributeValues={f":{k}": v for k, v in updates.items()})
    _history(event, champion_version=serving["champion_version"], challenger_version=serving["challenger_version"],
             champion_weight=Decimal(str(champion)), challenger_weight=Decimal(str(challenger)),
             test_id=(extra or {}).get("active_test_id") or serving.get("active_test_id") or "-")
    return {"endpoint_name": ENDPOINT_NAME, "champion_weight": champion, "challenger_weight": challenger,
            "champion_version": _plain(serving["champion_version"]),
            "challenger_version": _plain(serving["challenger_version"])}


def list_versions(model_name: str) -> dict:
    if model_name != MODEL_NAME:
        raise HttpError(404, f"unknown model {model_name!r}; this API serves {MODEL_NAME!r}")
    items = _resource(VERSIONS_TABLE).query(KeyConditionExpression=Key("model_name").eq(model_name),
                                           ScanIndexForward=False, Limit=100)["Items"]
    fields = ("version", "status", "created_at", "updated_at", "variant", "model_data_url", "metrics")
    return {"model_name": model_name, "versions": [{k: _plain(i[k]) for k in fields if k in i} for i in items]}


def start_ab_test(body: dict) -> dict:
    weight = _weight(body, "challenger_weight")
    if weight in (0, 1):
        raise HttpError(400, "challenger_weight must be between 0 and 1 (exclusive, 4 decimals) for an A/B test")
    metric = body.get("metric", "accuracy")
    if not isinstance(metric, str) or not 1 <= len(metric) <= 64:
        raise HttpError(400, "metric must be a name of 1 to 64 characters")
    serving = current()
    if serving["champion_version"] == serving["challenger_version"]:
        raise HttpError(409, "both variants serve the same version: deploy a new version first")
    test_id = uuid.uuid4().hex[:12]
    _resource(AB_TABLE).put_item(Item={
        "endpoint_name": ENDPOINT_NAME, "record": f"test#{test_id}", "test_id": test_id, "metric": metric,
        "champion_version": serving["champion_version"], "challenger_version": serving["challenger_version"],
        "challenger_weight": Decimal(str(weight)), "started_at": _now(), "outcome": "running"})
    result = set_weights(round(1 - weight, 6), weight, event="ab-test-started", extra={"active_test_id": test_id})
    return {"test_id": test_id, "metric": metric, **result}


def _end_test(serving: dict, outcome: str) -> None:
    test_id = serving.get("active_test_id")
    if test_id:
        _resource(AB_TABLE).update_item(
            Key={"endpoint_name": ENDPOINT_NAME, "record": f"test#{test_id}"},
            UpdateExpression="SET outcome = :o, ended_at = :t", ExpressionAttributeValues={":o": outcome, ":t": _now()})


def promote(body: dict) -> dict:
    serving = current()
    new, old = serving["challenger_version"], serving["production_version"]
    if new == old:
        raise HttpError(409, "the challenger already serves the production version: nothing to promote")
    versions = _resource(VERSIONS_TABLE)
    now = _now()
    result = set_weights(0.0, 1.0, event="promoted", extra={
        "production_version": new, "production_model": serving["challenger_model"],
        "previous_production_version": old, "active_test_id": None})
    versions.update_item(Key={"model_name": MODEL_NAME, "version": new}, UpdateExpression="SET #s = :s, updated_at = :t",
                         ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "production", ":t": now})
    versions.update_item(Key={"model_name": MODEL_NAME, "version": old}, UpdateExpression="SET #s = :s, updated_at = :t",
                         ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "retired", ":t": now})
    _end_test(serving, str(body.get("outcome", "promoted"))[:200])
    return {**result, "production_version": _plain(new), "retired_version": _plain(old)}


def rollback(body: dict) -> dict:
    request = {"model_name": MODEL_NAME, "action": "rollback"}
    if "version" in body:
        version = body["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise HttpError(400, "version must be a positive whole number")
        request["version"] = version
    current()  # 409 when nothing is deployed, before an execution that would only fail
    started = _client("stepfunctions").start_execution(
        stateMachineArn=STATE_MACHINE_ARN, name=f"rollback-{uuid.uuid4().hex}", input=json.dumps(request))
    return {"execution_arn": started["executionArn"], "input": request}


def route(event: dict) -> tuple[int, dict]:
    key = (event.get("httpMethod"), event.get("resource"))
    params = event.get("pathParameters") or {}
    if key == ("GET", "/models/{model_name}/versions"):
        return 200, list_versions(params.get("model_name", ""))
    if key == ("GET", "/ab-tests/current"):
        return 200, _plain(current())
    if key == ("POST", "/ab-tests"):
        return 200, start_ab_test(_body(event))
    if key == ("PUT", "/ab-tests/current/weights"):
        body = _body(event)
        return 200, set_weights(_weight(body, "champion"), _weight(body, "challenger"), event="weights-set")
    if key == ("POST", "/promote"):
        return 200, promote(_body(event))
    if key == ("POST", "/rollback"):
        return 202, rollback(_body(event))
    raise HttpError(404, f"no route {key[0]} {key[1]}")


def handler(event: dict, context: object) -> dict:
    try:
        status, body = route(event)
    except HttpError as exc:
        logger.info("request refused", extra={"status": exc.status, "reason": exc.reason})
        return _response(exc.status, {"message": exc.reason})
    logger.info("management call", extra={"route": event.get("resource"), "status": status})
    return _response(status, body)
