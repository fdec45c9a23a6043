"""Autoscaling of the endpoint's variants, called by the deployment workflow.

``register`` (after the endpoint is InService on a new config): a scalable target and a target-tracking
policy on invocations per instance for each variant. ``prepare`` (before UpdateEndpoint): AWS rejects an
update that changes the instance type of an autoscaled variant, so such variants are deregistered first;
nothing else is touched (a model change alone keeps its target).

Step Functions' SDK integration for Application Auto Scaling cannot be exercised offline, hence a function.
"""
from __future__ import annotations

import logging
import os

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(os.environ["LOG_LEVEL"])

VARIANTS = tuple(os.environ["VARIANTS"].split(","))
MIN_CAPACITY = int(os.environ["MIN_CAPACITY"])
MAX_CAPACITY = int(os.environ["MAX_CAPACITY"])
TARGET_INVOCATIONS = float(os.environ["TARGET_INVOCATIONS_PER_INSTANCE"])
SCALE_IN_COOLDOWN = int(os.environ["SCALE_IN_COOLDOWN_SECONDS"])
SCALE_OUT_COOLDOWN = int(os.environ["SCALE_OUT_COOLDOWN_SECONDS"])
DIMENSION = "sagemaker:variant:DesiredInstanceCount"

_clients: dict[str, object] = {}


def _client(name: str):
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def register(endpoint: str) -> dict:
    scaling = _client("application-autoscaling")
    for variant in VARIANTS:
        rid = resource_id(endpoint, variant)
        # Idempotent: registering again updates min/max in place.
        scaling.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION,
                                         MinCapacity=MIN_CAPACITY, MaxCapacity=MAX_CAPACITY)
        scaling.put_scaling_policy(
            PolicyName=f"{endpoint}-{variant}-invocations", ServiceNamespace="sagemaker", ResourceId=rid,
            ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": TARGET_INVOCATIONS,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": SCALE_IN_COOLDOWN, "ScaleOutCooldown": SCALE_OUT_COOLDOWN,
            })
        logger.info("autoscaling registered", extra={"resource_id": rid, "min": MIN_CAPACITY, "max": MAX_CAPACITY})
    return {"registered": [resource_id(endpoint, v) for v in VARIANTS]}


def _not_registered(exc: ClientError) -> bool:
    # AWS answers ObjectNotFoundException; moto a ValidationException saying so.
    error = exc.response["Error"]
    return error["Code"] == "ObjectNotFoundException" or (
        error["Code"] == "ValidationException" and "No scalable target" in error.get("Message", ""))


def prepare(endpoint: str, instance_type: str) -> dict:
    sagemaker = _client("sagemaker")
    live = sagemaker.describe_endpoint(EndpointName=endpoint)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
    changing = [v["VariantName"] for v in config["ProductionVariants"] if v.get("InstanceType") != instance_type]
    scaling = _client("application-autoscaling")
    deregistered = []
    for variant in changing:
        rid = resource_id(endpoint, variant)
        try:
            scaling.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIMENSION)
        except ClientError as exc:
            if not _not_registered(exc):
                raise
            continue  # not registered (autoscaling failed or was removed): nothing to undo
        deregistered.append(rid)
    logger.info("autoscaling prepared", extra={"endpoint": endpoint, "deregistered": deregistered})
    return {"deregistered": deregistered}


def handler(event: dict, context: object) -> dict:
    action = event.get("action")
    endpoint = event["endpoint_name"]
    if action == "register":
        return register(endpoint)
    if action == "prepare":
        return prepare(endpoint, event["instance_type"])
    raise ValueError(f"unknown action {action!r}: expected register or prepare")
