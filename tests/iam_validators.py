"""IAM documents through validators written elsewhere (moto, parliament), with parliament's known false
positives: used by the policy-document tests of both stacks and of single components."""
import json

from moto.iam.policy_validation import IAMPolicyDocumentValidator, IAMTrustPolicyDocumentValidator
from parliament import analyze_policy_string

from policy import rules

# Findings parliament gets wrong, each with the reason; matched on (resource type, issue, detail text).
KNOWN_FALSE_POSITIVES = [
    # AWS documents kms:EncryptionContext:aws:logs:arn with ArnLike; parliament types the key as String.
    ("aws:kms/key:Key", "MISMATCHED_TYPE", "ArnLike"),
    # parliament wants a document ARN in every ssm:SendCommand statement, but the instance half must sit
    # in its own statement so its tag condition does not apply to the (untagged) AWS document.
    ("aws:iam/rolePolicy:RolePolicy", "RESOURCE_MISMATCH", "ssm:SendCommand"),
]


def documents_of(plan):
    for r in plan.resources:
        for kind, field, doc in rules.documents(r.type, r.inputs):
            yield f"{plan.project}:{r.name}.{field}", r.type, kind, field, doc


def problems(resource_type: str, kind: str, field: str, doc: dict) -> list[str]:
    text, out = json.dumps(doc), []
    if field == "assumeRolePolicy":
        # parliament calls every trust policy malformed (no Resource): moto's trust validator instead.
        try:
            IAMTrustPolicyDocumentValidator(text).validate()
        except Exception as exc:  # moto raises its own MalformedPolicyDocument
            out.append(f"moto trust validator: {exc}")
        return out
    if kind == "identity":
        try:
            IAMPolicyDocumentValidator(text).validate()
        except Exception as exc:
            out.append(f"moto validator: {exc}")
    for finding in analyze_policy_string(text).findings:
        detail = json.dumps(finding.detail, default=str)
        if finding.issue == "RESOURCE_STAR" and (kind == "identity" or resource_type == rules.KMS_KEY):
            continue  # key policies name their key as "*"; identity policies: the pack's no-unscoped-resource
        if any(resource_type == t and finding.issue == i and s in detail for t, i, s in KNOWN_FALSE_POSITIVES):
            continue
        out.append(f"parliament {finding.issue}: {detail[:300]}")
    return out
