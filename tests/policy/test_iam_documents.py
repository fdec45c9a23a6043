"""Every IAM document both stacks send to AWS, through validators written elsewhere (moto, parliament).

Our own IAM rules (no wildcard actions, no unscoped Resource '*', no public principal) are policies of
the pack (policy/rules.py) and are tested in test_policy_pack.py; this file keeps the outside checks.
"""
import pytest

from tests.iam_validators import documents_of as _documents
from tests.iam_validators import problems

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
