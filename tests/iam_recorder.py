"""Record the AWS operations code under test calls, and turn them into the IAM actions and resources
AWS authorizes (issue 11: least privilege proven against the code).

``install()`` hooks botocore's ``creating-client-class`` event so every client gets a small base class;
when a client is created from a file under ``functions/<name>/`` or ``gpu_training/instance/``, its own
``before-parameter-build`` event records each call (service, operation, parameters, the test running).
Clients the tests create themselves are not recorded, so fixtures and assertions do not count. Calls made
through s3transfer threads are recorded too: they use the code's client.

``authorizations(call)`` maps a call to (action, resource ARN, condition context) triples: the service's
IAM prefix plus the operation name, with the known exceptions (HeadObject is s3:GetObject, ListObjectsV2 is
s3:ListBucket, a copy reads its source, tagging and versions have their own actions, multipart uploads
are s3:PutObject, ...).

Run ``python -m tests.iam_recorder`` for the table per role (or ``pytest -s`` the tests listed in
tests/ml_pipeline/observability/test_least_privilege.py's ROLES with that module last).
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

import boto3
import botocore.handlers

REPO = Path(__file__).resolve().parents[1]
# Code whose clients are recorded: the part of the path that names it.
CODE_ROOTS = (REPO / "functions", REPO / "gpu_training" / "instance")
ACCOUNT = "123456789012"  # moto's default account, the same as the offline mocks'
# IAM prefix where it differs from the signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Call:
    code: str  # "functions/image_ingest", "gpu_training/instance"
    service: str  # IAM prefix
    operation: str
    params: dict
    region: str
    test: str


@dataclass
class Recording:
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def for_code(self, code: str) -> list[Call]:
        return [c for c in self.calls if c.code == code]


RECORDING = Recording()
_installed = False


def owner_of_stack() -> Optional[str]:
    """The code (``functions/<name>`` or ``gpu_training/instance``) that is creating a client, if any."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        for root in CODE_ROOTS:
            if root in path.parents:
                rel = path.relative_to(REPO).parts
                return "/".join(rel[:2])
        frame = frame.f_back
    return None


class _RecordingClient:
    """Mixed into every client class: a client created by code under test records its calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        code = owner_of_stack()
        if code is None:
            return
        region = self.meta.region_name
        signing = self.meta.service_model.signing_name
        service = IAM_PREFIX.get(signing, signing)

        def record(params: dict, model: Any, **_: Any) -> None:
            test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
            RECORDING.add(Call(code, service, model.name, dict(params), region, test))

        self.meta.events.register("before-parameter-build", record)


def _add_base(base_classes: list, **_: Any) -> None:
    if _RecordingClient not in base_classes:
        base_classes.insert(0, _RecordingClient)


def install() -> None:
    """Hook every botocore session created from now on, and boto3's default session if it exists."""
    global _installed
    if _installed:
        return
    botocore.handlers.BUILTIN_HANDLERS.append(("creating-client-class", _add_base))
    if boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION.events.register("creating-client-class", _add_base)
    _installed = True


# -- calls to authorizations -------------------------------------------------------------------
Authorization = tuple[str, str, dict]  # (action, resource ARN, condition context)


def _object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _copy_source(source: Any) -> tuple[str, str, Optional[str]]:
    if isinstance(source, dict):
        return source["Bucket"], source["Key"], source.get("VersionId")
    path, _, query = str(source).partition("?versionId=")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    return bucket, key, query or None


def _s3(call: Call) -> list[Authorization]:
    p, op = call.params, call.operation
    if op in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
        action = "s3:ListBucketVersions" if op == "ListObjectVersions" else "s3:ListBucket"
        return [(action, f"arn:aws:s3:::{p['Bucket']}", {"s3:prefix": p.get("Prefix", "")})]
    obj = _object(p["Bucket"], p["Key"]) if "Key" in p else f"arn:aws:s3:::{p['Bucket']}"
    versioned = bool(p.get("VersionId"))
    if op in ("GetObject", "HeadObject"):  # HEAD is authorized as s3:GetObject
        return [("s3:GetObjectVersion" if versioned else "s3:GetObject", obj, {})]
    if op == "GetObjectTagging":
        return [("s3:GetObjectVersionTagging" if versioned else "s3:GetObjectTagging", obj, {})]
    if op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        found = [("s3:PutObject", obj, {})]
        if p.get("Tagging"):
            found.append(("s3:PutObjectTagging", obj, {}))
        return found
    if op in ("CopyObject", "UploadPartCopy"):
        bucket, key, version = _copy_source(p["CopySource"])
        source = _object(bucket, key)
        found = [("s3:GetObjectVersion" if version else "s3:GetObject", source, {}), ("s3:PutObject", obj, {})]
        if op == "CopyObject" and p.get("TaggingDirective", "COPY") == "COPY":
            # S3 copies the source's tags: it reads them and writes them (authorized as the caller).
            found += [("s3:GetObjectVersionTagging" if version else "s3:GetObjectTagging", source, {}),
                      ("s3:PutObjectTagging", obj, {})]
        elif p.get("Tagging"):
            found.append(("s3:PutObjectTagging", obj, {}))
        return found
    return [(f"s3:{op}", obj, {})]


def _dynamodb(call: Call) -> list[Authorization]:
    p = call.params
    table = lambda name: f"arn:aws:dynamodb:{call.region}:{ACCOUNT}:table/{name}"  # noqa: E731
    if call.operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{call.operation}", table(name), {}) for name in p["RequestItems"]]
    if call.operation == "TransactWriteItems":
        found = []
        for item in p["TransactItems"]:
            (kind, body), = item.items()
            action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                      "ConditionCheck": "ConditionCheckItem"}[kind]
            found.append((f"dynamodb:{action}", table(body["TableName"]), {}))
        return found
    resource = table(p["TableName"])
    if p.get("IndexName"):
        resource += f"/index/{p['IndexName']}"
    return [(f"dynamodb:{call.operation}", resource, {})]


def _sqs(call: Call) -> list[Authorization]:
    url = urlparse(call.params["QueueUrl"])
    account, name = url.path.strip("/").split("/")[-2:]
    return [(f"sqs:{call.operation}", f"arn:aws:sqs:{call.region}:{account}:{name}", {})]


def _cloudwatch(call: Call) -> list[Authorization]:
    context = {"cloudwatch:namespace": call.params["Namespace"]} if "Namespace" in call.params else {}
    return [(f"cloudwatch:{call.operation}", "*", context)]


def _ssm(call: Call) -> list[Authorization]:
    p = call.params
    names = p.get("Names") or [p.get("Name") or p.get("Path")]
    return [(f"ssm:{call.operation}", f"arn:aws:ssm:{call.region}:{ACCOUNT}:parameter/{n.lstrip('/')}", {})
            for n in names]


def _sns(call: Call) -> list[Authorization]:
    return [(f"sns:{call.operation}", call.params["TopicArn"], {})]


# SageMaker puts names into ARNs in lower case; a new model package gets the group's next version number.
_SAGEMAKER_RESOURCES = {"TrainingJobName": "training-job", "ProcessingJobName": "processing-job",
                        "HyperParameterTuningJobName": "hyper-parameter-tuning-job"}


def _sagemaker(call: Call) -> list[Authorization]:
    p, arn = call.params, f"arn:aws:sagemaker:{call.region}:{ACCOUNT}:"
    if call.operation == "CreateModelPackage" and p.get("ModelPackageGroupName"):
        return [("sagemaker:CreateModelPackage", f"{arn}model-package/{p['ModelPackageGroupName'].lower()}/*", {})]
    for param, kind in _SAGEMAKER_RESOURCES.items():
        if param in p:
            return [(f"sagemaker:{call.operation}", f"{arn}{kind}/{p[param].lower()}", {})]
    # Serving: the runtime (InvokeEndpoint) and the endpoint calls also sign as sagemaker.
    if call.operation == "DescribeEndpointConfig":
        return [(f"sagemaker:{call.operation}", f"{arn}endpoint-config/{p['EndpointConfigName'].lower()}", {})]
    if "EndpointName" in p:
        return [(f"sagemaker:{call.operation}", f"{arn}endpoint/{p['EndpointName'].lower()}", {})]
    raise KeyError(f"no IAM mapping for sagemaker:{call.operation}; add one to tests/iam_recorder.py")


MAPPERS = {"s3": _s3, "dynamodb": _dynamodb, "sqs": _sqs, "cloudwatch": _cloudwatch, "ssm": _ssm,
           "sns": _sns, "sagemaker": _sagemaker}


def authorizations(call: Call) -> list[Authorization]:
    mapper = MAPPERS.get(call.service)
    if mapper is None:
        raise KeyError(f"no IAM mapping for {call.service}:{call.operation}; add one to tests/iam_recorder.py")
    return mapper(call)


def main() -> int:
    """Run the recorded tests and the least-privilege check, printing the table per role."""
    import pytest
    sys.path.insert(0, str(REPO / "tests" / "ml_pipeline" / "observability"))
    from test_least_privilege import ROLES
    paths = sorted({t.split("::")[0] for role in ROLES for t in role.tests})
    return pytest.main(["-q", "-s", "-p", "no:cacheprovider", *paths,
                        "tests/ml_pipeline/observability/test_least_privilege.py"])


if __name__ == "__main__":
    sys.exit(main())
