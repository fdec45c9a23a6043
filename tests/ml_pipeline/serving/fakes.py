"""Test doubles and loaders for the serving tests: settings without Pulumi, function modules by path, and
the one SageMaker call moto does not implement (UpdateEndpoint).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Optional

import boto3

from ml_pipeline.serving import settings as serving_settings
from shared.config_reader import ConfigReader
from ml_pipeline.training.component import MODEL_VERSIONS  # contract 4's schema, as deployed

REPO = Path(__file__).resolve().parents[3]
ACCOUNT = "123456789012"
REGION = "us-east-1"
PREFIX = "ml-pipeline-test"
MODEL = "image-classifier"
ENDPOINT = f"{PREFIX}-{MODEL}"
VERSIONS_TABLE = f"{PREFIX}-model-versions"
AB_TABLE = f"{PREFIX}-ab-tests"


class FakeConfig:
    name = "ml-pipeline"

    def __init__(self, values: Optional[dict] = None):
        self.values = values or {}

    def get(self, key: str):
        return self.values.get(key)


def settings(values: Optional[dict] = None, production: bool = False) -> serving_settings.ServingSettings:
    return serving_settings.load(ConfigReader(FakeConfig(values)), production=production,
                                 model_name=(values or {}).get("modelName", "image-classifier"))


def load_function(folder: str, env: dict, monkeypatch) -> ModuleType:
    """A function's handler module under a unique name, imported with its environment set (each function
    folder is its own zip, so their module names overlap)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = f"serving_fn_{folder}"
    path = REPO / "functions" / folder
    monkeypatch.syspath_prepend(str(path))
    spec = importlib.util.spec_from_file_location(name, path / "handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def create_tables() -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(**MODEL_VERSIONS.create_table_request(VERSIONS_TABLE))
    ddb.create_table(
        TableName=AB_TABLE, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "endpoint_name", "AttributeType": "S"},
                              {"AttributeName": "record", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "endpoint_name", "KeyType": "HASH"}, {"AttributeName": "record", "KeyType": "RANGE"}])


def put_version(version: int, status: str = "approved") -> None:
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=VERSIONS_TABLE, Item={
        "model_name": {"S": MODEL}, "version": {"N": str(version)}, "status": {"S": status},
        "model_data_url": {"S": f"s3://artifacts/models/{MODEL}/{version}/model.tar.gz"},
        "created_at": {"S": "2026-11-29T10:00:00Z"}, "updated_at": {"S": "2026-11-29T10:00:00Z"}})


def version_status(version: int) -> str:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=VERSIONS_TABLE, Key={"model_name": {"S": MODEL}, "version": {"N": str(version)}})["Item"]
    return item["status"]["S"]


def ab_items() -> dict[str, dict]:
    items = boto3.resource("dynamodb", region_name=REGION).Table(AB_TABLE).scan(ConsistentRead=True)["Items"]
    return {i["record"]: i for i in items}


@dataclass
class UpdateEndpointDouble:
    """Stands in for SageMaker's UpdateEndpoint, which moto 5.2.5 does not implement (NotImplementedError).

    Hooked on boto3's default session (the clients Step Functions tasks use under moto), it answers the
    call, records the request, leaves the endpoint ``Updating`` for ``polls`` DescribeEndpoint calls, then
    either moves it to the new config (``outcome="complete"``, instance counts retained as the request
    asks) or keeps it InService on the old one (``outcome="rollback"``: the guardrails' alarm fired).
    """

    outcome: str = "complete"
    polls: int = 1
    requests: list = field(default_factory=list)
    _pending: Optional[dict] = None

    def install(self) -> "UpdateEndpointDouble":
        events = boto3._get_default_session().events
        events.register("before-call.sagemaker.UpdateEndpoint", self._update, unique_id="serving-update-double")
        events.register("before-call.sagemaker.DescribeEndpoint", self._describe, unique_id="serving-describe-double")
        return self

    def uninstall(self) -> None:
        events = boto3._get_default_session().events
        events.unregister("before-call.sagemaker.UpdateEndpoint", unique_id="serving-update-double")
        events.unregister("before-call.sagemaker.DescribeEndpoint", unique_id="serving-describe-double")

    @staticmethod
    def _backend():
        from moto.sagemaker.models import sagemaker_backends
        return sagemaker_backends[ACCOUNT][REGION]

    def _update(self, params, **_):
        # before-call hands over the serialized request: SageMaker's JSON protocol puts the API
        # parameters in the body.
        params = json.loads(params["body"])
        self.requests.append(params)
        endpoint = self._backend().endpoints[params["EndpointName"]]
        endpoint.endpoint_status = "Updating"
        self._pending = {"name": params["EndpointName"], "config": params["EndpointConfigName"], "left": self.polls,
                         "retain": params.get("RetainAllVariantProperties", False)}
        return SimpleNamespace(status_code=200, headers={}), {"EndpointArn": endpoint.arn}

    def _describe(self, params, **_):
        params = json.loads(params["body"])
        pending = self._pending
        if pending is None or pending["name"] != params["EndpointName"]:
            return None
        if pending["left"] > 0:
            pending["left"] -= 1
            return None
        backend = self._backend()
        endpoint = backend.endpoints[pending["name"]]
        if self.outcome == "complete":
            old = {v["VariantName"]: v for v in endpoint.production_variants}
            variants = endpoint._process_production_variants(
                backend.endpoint_configs[pending["config"]].production_variants)
            for variant in variants:
                if pending["retain"] and variant["VariantName"] in old:
                    variant["CurrentInstanceCount"] = old[variant["VariantName"]].get("CurrentInstanceCount")
                    variant["DesiredInstanceCount"] = old[variant["VariantName"]].get("DesiredInstanceCount")
            endpoint.endpoint_config_name, endpoint.production_variants = pending["config"], variants
        endpoint.endpoint_status = "InService"
        self._pending = None
        return None
