"""Request parameters checked against botocore's service models: required and unknown keys, types, and what
ParamValidator skips (enums, patterns, minimums and maximums of strings, numbers and lists)."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from botocore.validate import ParamValidator
from tests.botocore_models import service_model

# Sample values for ``"Key.$"`` entries (resolved at run time), by parameter name.
SAMPLES = {
    "ModelDataUrl": "s3://bucket/models/1/model.tar.gz",
    "InitialVariantWeight": 0.5,
    "N": "1",
}


@lru_cache(maxsize=None)
def _model(service: str):
    return service_model(service)


def substitute(value: Any, shape=None) -> Any:
    """Replace ``"Key.$": path`` by ``"Key": sample`` throughout."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = key[:-2] if key.endswith(".$") else key
            member = None
            if shape is not None and shape.type_name == "structure":
                member = shape.members.get(name)
            elif shape is not None and shape.type_name == "map":
                member = shape.value
            out[name] = _sample(name, member) if key.endswith(".$") else substitute(item, member)
        return out
    if isinstance(value, list):
        return [substitute(v, shape.member if shape is not None and shape.type_name == "list" else None) for v in value]
    return value


def _sample(name: str, shape) -> Any:
    if name in SAMPLES:
        return SAMPLES[name]
    if shape is None:
        return "sample-1"
    if shape.type_name == "structure":
        # A whole attribute value (DynamoDB) copied from a path.
        return {"S": "sample-1"} if "S" in shape.members else {}
    return {"string": "sample-1", "integer": 1, "long": 1, "float": 0.5, "double": 0.5, "boolean": True,
            "list": [], "map": {}}.get(shape.type_name, "sample-1")


def _matches(pattern: str, value: str) -> bool:
    """Java-style patterns (``\\p{...}``) need the ``regex`` module; without it they are skipped."""
    try:
        return re.search(pattern, value) is not None
    except re.error:
        try:
            import regex
        except ImportError:
            return True
        return regex.search(pattern, value) is not None


def problems(service: str, operation: str, params: dict) -> list[str]:
    shape = _model(service).operation_model(operation).input_shape
    concrete = substitute(params, shape)
    report = ParamValidator().validate(concrete, shape)
    found = [report.generate_report()] if report.has_errors() else []
    _walk(concrete, shape, operation, found)
    return found


def _walk(value: Any, shape, path: str, found: list[str]) -> None:
    if shape is None:
        return
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                _walk(item, shape.members[key], f"{path}.{key}", found)
    elif shape.type_name == "list" and isinstance(value, list):
        if "min" in meta and len(value) < meta["min"] or "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} items, allowed {meta.get('min')}..{meta.get('max')}")
        for i, item in enumerate(value):
            _walk(item, shape.member, f"{path}[{i}]", found)
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            _walk(item, shape.value, f"{path}.{key}", found)
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            found.append(f"{path}: {value!r} is not one of {shape.enum}")
        if "pattern" in meta and not _matches(meta["pattern"], value):
            found.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if "max" in meta and len(value) > meta["max"] or "min" in meta and len(value) < meta["min"]:
            found.append(f"{path}: length {len(value)} outside {meta.get('min')}..{meta.get('max')}")
    elif shape.type_name in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
            found.append(f"{path}: {value} outside {meta.get('min')}..{meta.get('max')}")
