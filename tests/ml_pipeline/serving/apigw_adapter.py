"""A small WSGI stand-in for API Gateway's Lambda proxy integration, built from the OpenAPI document.

It matches the request to the document's path template, builds the proxy event (resource, path,
pathParameters, headers, body, requestContext with an IAM identity) and calls the handler the
operation's ``x-amazon-apigateway-integration`` names. It does not emulate API Gateway's own validation,
authorization or throttling: what reaches the handlers here is anything a client could send.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Callable
from urllib.parse import parse_qsl


class ApiGatewayAdapter:
    def __init__(self, document: dict, handlers: dict[str, Callable], caller_arn: str):
        """``handlers``: integration URI -> handler(event, context)."""
        self.document = document
        self.caller_arn = caller_arn
        self.routes = []
        for path, methods in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
            for method, operation in methods.items():
                uri = operation["x-amazon-apigateway-integration"]["uri"]
                self.routes.append((method.upper(), pattern, path, handlers[uri]))

    def event(self, method: str, path: str, body: str | None, headers: dict, query: dict) -> tuple[dict, Callable] | None:
        for route_method, pattern, resource, handler in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                return {
                    "resource": resource, "path": path, "httpMethod": method, "headers": headers,
                    "queryStringParameters": query or None, "pathParameters": match.groupdict() or None,
                    "body": body, "isBase64Encoded": False,
                    "requestContext": {"requestId": uuid.uuid4().hex, "httpMethod": method, "resourcePath": resource,
                                       "identity": {"userArn": self.caller_arn, "caller": "AROAEXAMPLE:session"}},
                }, handler
        return None

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if path == "/openapi.json":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(self.document).encode()]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else None
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        found = self.event(method, path, body, headers, dict(parse_qsl(environ.get("QUERY_STRING", ""))))
        if found is None:
            # API Gateway answers unknown routes itself (403 "Missing Authentication Token").
            start_response("403 Forbidden", [("Content-Type", "application/json")])
            return [b'{"message":"Missing Authentication Token"}']
        event, handler = found
        result = handler(event, Context())
        status = result["statusCode"]
        start_response(f"{status} {'OK' if status < 400 else 'Error'}", list(result.get("headers", {}).items()))
        return [result.get("body", "").encode()]


class Context:
    """The part of the Lambda context the handlers use."""

    function_name = "local"
    aws_request_id = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 3000
