"""The inference API as one OpenAPI 3.0 document (``RestApi(body=...)``): routes, request models and
validators, IAM (SigV4) authorization, API keys for the usage plan, the resource policy and the Lambda
proxy integrations. The same document is validated offline and hashed to redeploy the stage.
"""
from __future__ import annotations

import hashlib
import json

VARIANT = {"type": "string", "enum": ["champion", "challenger"]}
MAX_INSTANCES = 64
# Management routes: only the operator role may call them (resource policy below).
MANAGEMENT = (("GET", "/models/{model_name}/versions"), ("GET", "/ab-tests/current"), ("POST", "/ab-tests"),
              ("PUT", "/ab-tests/current/weights"), ("POST", "/promote"), ("POST", "/rollback"))
PREDICTION = (("POST", "/predict"), ("POST", "/predict/async"), ("GET", "/predictions/{id}"))


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _integration(invoke_arn: str) -> dict:
    return {"type": "aws_proxy", "httpMethod": "POST", "uri": invoke_arn, "passthroughBehavior": "when_no_match",
            "timeoutInMillis": 29000}


SCHEMAS = {
    "Error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    "PredictRequest": {
        "type": "object", "required": ["instances"], "additionalProperties": False,
        "properties": {
            "instances": {"type": "array", "minItems": 1, "maxItems": MAX_INSTANCES,
                          "items": {"type": "string", "minLength": 4, "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
                          "description": "base64-encoded images (JPEG or PNG)"},
            "variant": VARIANT}},
    "Prediction": {"type": "object", "required": ["label", "probability"], "properties": {
        "label": {"type": "string"}, "probability": {"type": "number"},
        "top": {"type": "array", "items": {"type": "array", "items": {}}}}},
    "PredictResponse": {"type": "object", "required": ["predictions", "variant"], "properties": {
        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
        "model_version": {"type": "integer", "nullable": True}, "variant": {"type": "string"}}},
    "Accepted": {"type": "object", "required": ["request_id", "status"], "properties": {
        "request_id": {"type": "string"}, "status": {"type": "string", "enum": ["queued"]}}},
    "PredictionResult": {"type": "object", "required": ["request_id", "status"], "properties": {
        "request_id": {"type": "string"}, "status": {"type": "string", "enum": ["queued", "done", "failed"]},
        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}},
        "variant": {"type": "string"}, "error": {"type": "string"}}},
    "Versions": {"type": "object", "required": ["model_name", "versions"], "properties": {
        "model_name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "object"}}}},
    "Serving": {"type": "object", "required": ["endpoint_name"], "properties": {"endpoint_name": {"type": "string"}},
                "additionalProperties": True},
    "StartAbTest": {"type": "object", "required": ["challenger_weight"], "additionalProperties": False, "properties": {
        "challenger_weight": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "exclusiveMaximum": True,
                              "maximum": 1},
        "metric": {"type": "string", "minLength": 1, "maxLength": 64}}},
    "Weights": {"type": "object", "required": ["champion", "challenger"], "additionalProperties": False,
                "properties": {"champion": {"type": "number", "minimum": 0, "maximum": 1},
                               "challenger": {"type": "number", "minimum": 0, "maximum": 1}}},
    "WeightsSet": {"type": "object", "required": ["champion_weight", "challenger_weight"], "properties": {
        "champion_weight": {"type": "number"}, "challenger_weight": {"type": "number"}},
        "additionalProperties": True},
    "Promote": {"type": "object", "additionalProperties": False,
                "properties": {"outcome": {"type": "string", "maxLength": 200}}},
    "Rollback": {"type": "object", "additionalProperties": False,
                 "properties": {"version": {"type": "integer", "minimum": 1}}},
    "RollbackStarted": {"type": "object", "required": ["execution_arn"], "properties": {
        "execution_arn": {"type": "string"}, "input": {"type": "object"}}},
}


def document(*, title: str, predict_invoke_arn: str, manage_invoke_arn: str, operator_role_arn: str,
             account_root_arn: str) -> dict:
    predict = _integration(predict_invoke_arn)
    manage = _integration(manage_invoke_arn)
    client_auth = [{"sigv4": [], "api_key": []}]
    operator_auth = [{"sigv4": []}]

    def op(summary: str, integration: dict, responses: dict, *, body: str | None = None, auth=None,
           validator: str = "body", parameters: list | None = None) -> dict:
        operation = {"summary": summary, "security": auth or operator_auth, "responses": responses,
                     "x-amazon-apigateway-integration": integration, "x-amazon-apigateway-request-validator": validator}
        if body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body}"}}}}
        if parameters:
            operation["parameters"] = parameters
        return operation

    common = {"400": _error("Malformed request, with the reason"), "403": _error("Not authorized")}
    paths = {
        "/predict": {"post": op(
            "Predict synchronously (the endpoint splits traffic by weight; variant targets one)", predict,
            {"200": _json("PredictResponse"), **common, "413": _error("Request too large"),
             "422": _error("The model rejected the input"), "429": _error("Throttled"),
             "502": _error("The model failed"), "503": _error("The endpoint is unavailable or throttling")},
            body="PredictRequest", auth=client_auth)},
        "/predict/async": {"post": op(
            "Queue a prediction; poll GET /predictions/{id}", predict,
            {"202": _json("Accepted", "Queued"), **common, "413": _error("Request too large"),
             "429": _error("Throttled"), "502": _error("Queueing failed"), "503": _error("Stream throttled")},
            body="PredictRequest", auth=client_auth)},
        "/predictions/{id}": {"get": op(
            "The result or status of an asynchronous prediction", predict,
            {"200": _json("PredictionResult"), **common, "404": _error("Unknown or expired"),
             "429": _error("Throttled"), "503": _error("Result store unavailable")},
            auth=client_auth, validator="params", parameters=[{"name": "id", "in": "path", "required": True,
                                                                "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}])},
        "/models/{model_name}/versions": {"get": op(
            "List the model's versions (newest first)", manage,
            {"200": _json("Versions"), **common, "404": _error("Unknown model")}, validator="params",
            parameters=[{"name": "model_name", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"}}])},
        "/ab-tests/current": {"get": op(
            "What the endpoint serves: versions, weights, the running test", manage,
            {"200": _json("Serving"), **common, "409": _error("Nothing deployed")}, validator="params")},
        "/ab-tests": {"post": op(
            "Start an A/B test: the challenger gets challenger_weight of the traffic", manage,
            {"200": _json("WeightsSet"), **common, "409": _error("Nothing to test"),
             "503": _error("SageMaker unavailable")}, body="StartAbTest")},
        "/ab-tests/current/weights": {"put": op(
            "Set the variants' weights (UpdateEndpointWeightsAndCapacities, no redeploy)", manage,
            {"200": _json("WeightsSet"), **common, "409": _error("Endpoint busy or nothing deployed"),
             "503": _error("SageMaker unavailable")}, body="Weights")},
        "/promote": {"post": op(
            "Promote the challenger: all traffic to it, its version becomes production", manage,
            {"200": _json("WeightsSet"), **common, "409": _error("Nothing to promote"),
             "503": _error("SageMaker unavailable")}, body="Promote")},
        "/rollback": {"post": op(
            "Roll back to the previous production version (or the version given)", manage,
            {"202": _json("RollbackStarted", "Rollback started"), **common, "409": _error("Nothing deployed")},
            body="Rollback")},
    }
    management_arns = [f"execute-api:/*/{method}{path.split('{')[0]}*" for method, path in MANAGEMENT]
    return {
        "openapi": "3.0.1",
        "info": {"title": title, "version": "1.0.0",
                 "description": "Image classification: predictions (IAM + API key), model management (operator role)"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "sigv4": {"type": "apiKey", "name": "Authorization", "in": "header",
                          "x-amazon-apigateway-authtype": "awsSigv4"},
                "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
            },
        },
        "x-amazon-apigateway-api-key-source": "HEADER",
        "x-amazon-apigateway-request-validators": {
            "body": {"validateRequestBody": True, "validateRequestParameters": True},
            "params": {"validateRequestBody": False, "validateRequestParameters": True},
        },
        "x-amazon-apigateway-binary-media-types": [],
        "x-amazon-apigateway-gateway-responses": {
            # API Gateway's own refusals (validation, auth, throttling) answer in the API's error shape.
            "BAD_REQUEST_BODY": {"statusCode": 400, "responseTemplates": {
                "application/json": "{\"message\": \"$context.error.validationErrorString\"}"}},
            "DEFAULT_4XX": {"responseTemplates": {"application/json": "{\"message\": $context.error.messageString}"}},
            "DEFAULT_5XX": {"responseTemplates": {"application/json": "{\"message\": $context.error.messageString}"}},
        },
        "x-amazon-apigateway-policy": {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AccountCallers", "Effect": "Allow", "Principal": {"AWS": account_root_arn},
                 "Action": "execute-api:Invoke", "Resource": "execute-api:/*"},
                {"Sid": "ManagementOperatorOnly", "Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke",
                 "Resource": management_arns,
                 "Condition": {"ArnNotEquals": {"aws:PrincipalArn": operator_role_arn}}},
            ],
        },
    }


def document_hash(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
