"""Collect every IAM document a plan would send to AWS and lint it with validators written elsewhere."""
from __future__ import annotations

import json
from dataclasses import dataclass

from moto.iam.policy_validation import IAMPolicyDocumentValidator, IAMTrustPolicyDocumentValidator
from parliament import analyze_policy_string

from shared.iam import NO_RESOURCE_LEVEL_ACTIONS

IDENTITY = {"aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"}
RESOURCE_POLICY_FIELDS = {
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "policy",
    "aws:kms/key:Key": "policy",
}

# Findings parliament gets wrong, each with the reason; matched on (resource type, issue, detail text).
KNOWN_FALSE_POSITIVES = [
    # AWS documents kms:EncryptionContext:aws:logs:arn with ArnLike; parliament types the key as String.
    ("aws:kms/key:Key", "MISMATCHED_TYPE", "ArnLike"),
    # parliament wants a document ARN in every ssm:SendCommand statement, but the instance half must sit
    # in its own statement so its tag condition does not apply to the (untagged) AWS document.
    ("aws:iam/rolePolicy:RolePolicy", "RESOURCE_MISMATCH", "ssm:SendCommand"),
]


@dataclass
class Document:
    plan: str
    resource_type: str
    resource_name: str
    field: str
    text: str

    @property
    def json(self) -> dict:
        return json.loads(self.text)

    def __str__(self) -> str:
        return f"{self.plan}:{self.resource_name} ({self.resource_type.split(':')[-1]}.{self.field})"


def documents(plan) -> list[Document]:
    found = []
    for r in plan.resources:
        fields = []
        if r.type in IDENTITY:
            fields.append("policy")
        if r.type in RESOURCE_POLICY_FIELDS and r.inputs.get(RESOURCE_POLICY_FIELDS[r.type]):
            fields.append(RESOURCE_POLICY_FIELDS[r.type])
        if r.type == "aws:iam/role:Role":
            fields.append("assumeRolePolicy")
        for field in fields:
            found.append(Document(plan.project, r.type, r.name, field, r.inputs[field]))
    return found


def statements(doc: Document) -> list[dict]:
    body = doc.json["Statement"]
    return body if isinstance(body, list) else [body]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def problems(doc: Document) -> list[str]:
    """Every reason this document would be wrong; [] when it is clean."""
    out = []
    if doc.field == "assumeRolePolicy":
        # parliament calls every trust policy malformed (no Resource): moto's trust validator instead.
        try:
            IAMTrustPolicyDocumentValidator(doc.text).validate()
        except Exception as exc:  # moto raises its own MalformedPolicyDocument
            out.append(f"moto trust validator: {exc}")
        return out
    if doc.resource_type in IDENTITY:
        try:
            IAMPolicyDocumentValidator(doc.text).validate()
        except Exception as exc:
            out.append(f"moto validator: {exc}")
    for st in statements(doc):
        actions = _as_list(st.get("Action", []))
        if "*" in actions:
            out.append(f"statement {st.get('Sid')}: Action '*'")
        if st.get("Effect") == "Allow" and doc.resource_type in IDENTITY and st.get("Resource") == "*":
            unscoped = [a for a in actions if a not in NO_RESOURCE_LEVEL_ACTIONS]
            if unscoped:
                out.append(f"statement {st.get('Sid')}: Resource '*' for actions with resource-level permissions {unscoped}")
        principal = st.get("Principal")
        if (st.get("Effect") == "Allow" and doc.resource_type not in IDENTITY
                and doc.resource_type != "aws:ec2/vpcEndpoint:VpcEndpoint"
                and principal in ("*", {"AWS": "*"}) and not st.get("Condition")):
            out.append(f"statement {st.get('Sid')}: allows any principal without a condition (public)")
    for finding in analyze_policy_string(doc.text).findings:
        detail = json.dumps(finding.detail, default=str)
        if finding.issue == "RESOURCE_STAR" and (doc.resource_type in IDENTITY or doc.resource_type == "aws:kms/key:Key"):
            # Key policies name their key as "*"; identity policies were checked against the list above.
            continue
        if any(doc.resource_type == t and finding.issue == i and text in detail for t, i, text in KNOWN_FALSE_POSITIVES):
            continue
        out.append(f"parliament {finding.issue}: {detail[:300]}")
    return out
