"""Every IAM document of both stacks is linted: parliament, moto's validators and our own rules."""
import json

import pytest

import policy_lint


def test_both_stacks_produce_the_documents_we_expect_to_lint(plans):
    kinds = {(d.plan, d.resource_type) for p in plans for d in policy_lint.documents(p)}
    for project in ("gpu-training", "ml-pipeline"):
        assert (project, "aws:iam/rolePolicy:RolePolicy") in kinds
        assert (project, "aws:kms/key:Key") in kinds
        assert (project, "aws:s3/bucketPolicy:BucketPolicy") in kinds
        assert (project, "aws:iam/role:Role") in kinds
    assert ("ml-pipeline", "aws:sqs/queuePolicy:QueuePolicy") in kinds
    assert ("gpu-training", "aws:ec2/vpcEndpoint:VpcEndpoint") in kinds


def test_every_policy_document_is_clean(plans):
    report = {str(d): policy_lint.problems(d) for p in plans for d in policy_lint.documents(p)}
    assert len(report) > 20
    assert {k: v for k, v in report.items() if v} == {}


@pytest.mark.parametrize("statement, expected", [
    ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/*"}, "Action '*'"),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, "resource-level"),
    ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bucket"}, "RESOURCE_MISMATCH"),
    ({"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"}, "UNKNOWN_ACTION"),
    ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:us-east-1:123456789012:mytable"},
     "RESOURCE_MISMATCH"),
])
def test_the_linter_catches_what_it_claims(statement, expected):
    doc = policy_lint.Document("t", "aws:iam/rolePolicy:RolePolicy", "bad", "policy",
                               json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    assert any(expected in p for p in policy_lint.problems(doc))


def test_the_linter_rejects_a_public_resource_policy():
    doc = policy_lint.Document("t", "aws:s3/bucketPolicy:BucketPolicy", "public", "policy", json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}))
    assert any("public" in p for p in policy_lint.problems(doc))


def test_the_linter_rejects_a_malformed_trust_policy():
    doc = policy_lint.Document("t", "aws:iam/role:Role", "r", "assumeRolePolicy", json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "s3:GetObject"}]}))
    assert policy_lint.problems(doc)
