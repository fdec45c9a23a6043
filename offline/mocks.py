"""Recording Pulumi mocks that answer like AWS enough for the programs to run, and record every input.

Invokes the mocks do not know raise, so a new lookup in a program fails loudly here instead of
quietly returning ``None`` fields. StackReferences are answered with outputs the caller supplies
(normally the other project's real mocked exports).
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

ACCOUNT_ID = "123456789012"
AZ_IDS = {"a": "use1-az1", "b": "use1-az2", "c": "use1-az4", "d": "use1-az6"}
MOCK_AMI_ID = "ami-0abcdef1234567890"
DLC_REGISTRY_ID = "763104351884"

_EC2_ID_PREFIX = {
    "Vpc": "vpc", "Subnet": "subnet", "SecurityGroup": "sg", "RouteTable": "rtb", "NatGateway": "nat",
    "InternetGateway": "igw", "Eip": "eipalloc", "VpcEndpoint": "vpce", "LaunchTemplate": "lt",
    "Fleet": "fleet", "FlowLog": "fl", "Route": "r", "RouteTableAssociation": "rtbassoc",
}


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass
class RecordedResource:
    type: str
    name: str
    inputs: dict[str, Any]
    custom: bool
    urn: str = ""
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)


class UnplannedStackError(LookupError):
    """A StackReference to a stack the offline run has no outputs for."""

    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"StackReference to {name!r}: that stack is not part of this offline run "
                         f"(planned: {', '.join(known) or 'none'})")


class RecordingMocks(pulumi.runtime.Mocks):
    # Service-linked roles the mocked account has (aws:iam/getRoles answers from these). Most accounts
    # have EC2 Fleet's; a test sets () to plan against a brand-new account.
    service_linked_roles: tuple[str, ...] = ("AWSServiceRoleForEC2Fleet", "AWSServiceRoleForEC2Spot")

    def __init__(self, region: str, stack_outputs: dict[str, dict[str, Any]] | None = None):
        self.region = region
        self.stack_outputs = stack_outputs or {}
        self.resources: list[RecordedResource] = []
        self.invokes: list[tuple[str, dict]] = []
        # The monitor calls new_resource from worker threads; it picks up the record made on its own thread.
        self.last_record = threading.local()

    # -- resources -------------------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == "pulumi:pulumi:StackReference":
            name = args.inputs.get("name") or args.name
            outputs = self.stack_outputs.get(name)
            if outputs is None:
                # `<org>/<project>/<stack>` answers from `<project>/<stack>`, whatever the organization.
                outputs = self.stack_outputs.get("/".join(name.split("/")[-2:]))
            if outputs is None:
                raise UnplannedStackError(name, sorted(self.stack_outputs))
            return name, {"name": name, "outputs": outputs, "secretOutputNames": []}
        if args.custom is False and not args.typ.startswith("aws:"):
            return "", {}
        record = RecordedResource(type=args.typ, name=args.name, inputs=dict(args.inputs), custom=True)
        self.resources.append(record)
        self.last_record.value = record
        record.id, record.state = self._state(args.typ, args.name, dict(args.inputs))
        return record.id, record.state

    def _arn(self, service: str, resource: str, regional: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if regional else ''}:{ACCOUNT_ID}:{resource}"

    def _state(self, typ: str, name: str, inputs: dict) -> tuple[str, dict]:
        module, _, kind = typ.partition("/")
        service = module.split(":")[1]
        kind = kind.split(":")[-1]
        phys = inputs.get("name") or f"{name}-{_short_hash(name, 7)}"
        state = dict(inputs)
        rid = f"{name}-id"
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or phys
            rid, state["bucket"], state["arn"] = bucket, bucket, f"arn:aws:s3:::{bucket}"
        elif service == "kms" and kind == "Key":
            rid = f"{_short_hash(name, 8)}-1234-5678-9abc-{_short_hash(name + 'k', 12)}"
            state.update(keyId=rid, arn=self._arn("kms", f"key/{rid}"))
        elif service == "kms" and kind == "Alias":
            state["arn"] = self._arn("kms", inputs["name"])
        elif service == "dynamodb" and kind == "Table":
            rid, state["name"], state["arn"] = phys, phys, self._arn("dynamodb", f"table/{phys}")
        elif service == "sqs" and kind == "Queue":
            rid = f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{phys}"
            state.update(name=phys, url=rid, arn=self._arn("sqs", phys))
        elif service == "sns" and kind == "Topic":
            rid = self._arn("sns", phys)
            state.update(name=phys, arn=rid)
        elif service == "iam" and kind in ("Role", "InstanceProfile", "Policy", "ServiceLinkedRole"):
            path = {"Role": "role", "InstanceProfile": "instance-profile", "Policy": "policy",
                    "ServiceLinkedRole": "role/aws-service-role"}[kind]
            rid, state["name"] = phys, phys
            state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:{path}/{phys}"
            if kind == "Role":
                state["uniqueId"] = f"AROA{_short_hash(name, 16).upper()}"
        elif service == "cloudwatch" and kind == "LogGroup":
            rid, state["name"], state["arn"] = phys, phys, self._arn("logs", f"log-group:{phys}")
        elif service == "cloudwatch" and kind == "EventRule":
            rid, state["name"], state["arn"] = phys, phys, self._arn("events", f"rule/{phys}")
        elif service == "cloudwatch" and kind == "MetricAlarm":
            rid, state["arn"] = phys, self._arn("cloudwatch", f"alarm:{phys}")
        elif service == "lambda" and kind == "Function":
            rid, state["name"], state["arn"] = phys, phys, self._arn("lambda", f"function:{phys}")
            state["invokeArn"] = f"arn:aws:apigateway:{self.region}:lambda:path/2015-03-31/functions/{state['arn']}/invocations"
        elif service == "sfn" and kind == "StateMachine":
            rid = self._arn("states", f"stateMachine:{phys}")
            state.update(name=phys, arn=rid)
        elif service == "sagemaker" and kind == "ModelPackageGroup":
            group = inputs["modelPackageGroupName"]
            rid, state["arn"] = group, self._arn("sagemaker", f"model-package-group/{group}")
        elif service == "lambda" and kind == "LayerVersion":
            layer = inputs.get("layerName", phys)
            state["layerArn"] = self._arn("lambda", f"layer:{layer}")
            rid = state["arn"] = f"{state['layerArn']}:1"
        elif service == "ssm" and kind == "Parameter":
            rid, state["arn"] = inputs["name"], self._arn("ssm", f"parameter{inputs['name']}")
        elif service == "sfn" and kind == "StateMachine":
            rid = state["arn"] = self._arn("states", f"stateMachine:{phys}")
        elif service == "apigateway" and kind == "RestApi":
            rid = _short_hash(name, 10)
            state.update(executionArn=self._arn("execute-api", rid), rootResourceId=_short_hash(name + "r", 10),
                         arn=f"arn:aws:apigateway:{self.region}::/restapis/{rid}")
        elif service == "apigateway" and kind in ("ApiKey", "UsagePlan", "Deployment"):
            rid = _short_hash(name, 10)
            state["arn"] = f"arn:aws:apigateway:{self.region}::/{kind.lower()}s/{rid}"
        elif service == "kinesis" and kind == "Stream":
            rid, state["name"], state["arn"] = phys, phys, self._arn("kinesis", f"stream/{phys}")
        elif service == "ec2" and kind in _EC2_ID_PREFIX:
            rid = f"{_EC2_ID_PREFIX[kind]}-{_short_hash(name, 17)}"
            state["arn"] = self._arn("ec2", f"{kind.lower()}/{rid}")
            if kind == "Vpc":
                state["defaultRouteTableId"] = f"rtb-{_short_hash(name + 'rt', 17)}"
            if kind == "LaunchTemplate":
                state["latestVersion"] = 1
            if kind == "VpcEndpoint" and inputs.get("vpcEndpointType") == "Gateway":
                # AWS's managed prefix list of the service (com.amazonaws.<region>.s3): security group rules use it.
                state["prefixListId"] = f"pl-{_short_hash(inputs.get('serviceName', name), 8)}"
        else:
            state.setdefault("arn", self._arn(service, f"{kind.lower()}/{phys}"))
        state.setdefault("id", rid)
        return rid, state

    # -- invokes ---------------------------------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        token, inputs = args.token, dict(args.args)
        self.invokes.append((token, inputs))
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline", "userId": "AIDAOFFLINE",
                    "id": ACCOUNT_ID}
        if token == "aws:index/getRegion:getRegion":
            return {"region": self.region, "name": self.region, "id": self.region,
                    "description": self.region, "endpoint": f"ec2.{self.region}.amazonaws.com"}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{s}" for s in AZ_IDS]
            return {"names": names, "zoneIds": list(AZ_IDS.values()), "id": self.region, "groupNames": [self.region]}
        if token == "aws:ssm/getParameter:getParameter":
            name = inputs["name"]
            return {"name": name, "value": MOCK_AMI_ID, "insecureValue": MOCK_AMI_ID, "type": "String",
                    "arn": self._arn("ssm", f"parameter{name}"), "version": 1, "id": name}
        if token == "aws:iam/getRoles:getRoles":
            names = [n for n in self.service_linked_roles
                     if inputs.get("pathPrefix", "/") in ("/", "/aws-service-role/")
                     and re.search(inputs.get("nameRegex") or "", n)]
            return {"names": names, "arns": [f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/{n}" for n in names],
                    "id": "aws-service-roles", "nameRegex": inputs.get("nameRegex"), "pathPrefix": inputs.get("pathPrefix")}
        if token == "aws:sagemaker/getPrebuiltEcrImage:getPrebuiltEcrImage":
            # The provider maps each region to AWS's registry account; us-east-1's deep learning
            # containers live in 763104351884 (the provider does not check that the tag exists).
            repo, tag = inputs["repositoryName"], inputs.get("imageTag") or "latest"
            registry = DLC_REGISTRY_ID
            return {"registryId": registry, "repositoryName": repo, "imageTag": tag, "id": registry,
                    "registryPath": f"{registry}.dkr.ecr.{self.region}.amazonaws.com/{repo}:{tag}"}
        raise NotImplementedError(f"offline mocks do not know the invoke {token!r}; add it to offline/mocks.py")


class RecordingMonitor(MockMonitor):
    """Adds what MockResourceArgs lacks: URN, parent, dependencies and provider of every resource."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.registrations: dict[str, dict] = {}
        self.urns: list[str] = []

    def ReadResource(self, request):
        # StackReferences (and .get() reads) arrive here rather than through RegisterResource.
        response = super().ReadResource(request)
        self.registrations[response.urn] = {
            "type": request.type, "name": request.name, "parent": request.parent, "custom": True, "read": True,
            "dependencies": list(request.dependencies), "provider": request.provider,
        }
        return response

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.urns.append(response.urn)
            self.registrations[response.urn] = {
                "type": request.type, "name": request.name, "parent": request.parent, "custom": request.custom,
                "dependencies": list(request.dependencies), "provider": request.provider,
            }
            record = getattr(self.mocks.last_record, "value", None)
            if request.custom and record is not None:
                record.urn, record.parent = response.urn, request.parent
                record.dependencies, record.provider = list(request.dependencies), request.provider
                self.mocks.last_record.value = None
        return response
