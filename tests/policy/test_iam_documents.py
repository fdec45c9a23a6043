"""Every IAM document both stacks send to AWS, through validators written elsewhere (moto, parliament).

Our own IAM rules (no wildcard actions, no unscoped Resource '*', no public principal) are policies of
the pack (policy/rules.py) and are tested in test_policy_pack.py; this file keeps the outside checks.
"""
import json

import pytest
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


def _documents(plan):
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


def test_both_stacks_produce_the_documents_we_expect_to_check(plans):
    kinds = {(p.project, t, field) for p in plans for _, t, _, field, _ in _documents(p)}
    for project in ("gpu-training", "ml-pipeline"):
        for expected in (("aws:iam/rolePolicy:RolePolicy", "policy"), ("aws:kms/key:Key", "policy"),
                         ("aws:s3/bucketPolicy:BucketPolicy", "policy"), ("aws:iam/role:Role", "assumeRolePolicy")):
            assert (project, *expected) in kinds
    assert ("ml-pipeline", "aws:sqs/queuePolicy:QueuePolicy", "policy") in kinds
    assert ("gpu-training", "aws:ec2/vpcEndpoint:VpcEndpoint", "policy") in kinds


def test_every_policy_document_passes_moto_and_parliament(plans):
    report = {label: problems(t, kind, field, doc) for p in plans for label, t, kind, field, doc in _documents(p)}
    assert len(report) > 20
    assert {k: v for k, v in report.items() if v} == {}


@pytest.mark.parametrize("statement, expected", [
    ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bucket"}, "RESOURCE_MISMATCH"),
    ({"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"}, "UNKNOWN_ACTION"),
    ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:us-east-1:123456789012:mytable"},
     "RESOURCE_MISMATCH"),
    ({"Effect": "Allow", "Action": "s3:GetObject"}, "moto validator"),
])
def test_the_validators_catch_what_we_rely_on_them_for(statement, expected):
    doc = {"Version": "2012-10-17", "Statement": [statement]}
    assert any(expected in p for p in problems("aws:iam/rolePolicy:RolePolicy", "identity", "policy", doc))


def test_a_malformed_trust_policy_is_rejected():
    doc = {"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "s3:GetObject"}]}
    assert problems("aws:iam/role:Role", "resource", "assumeRolePolicy", doc)
