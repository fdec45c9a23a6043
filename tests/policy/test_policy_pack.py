"""The policy pack (policy/rules.py) over both stacks' recorded resources: everything passes, and each
policy fails, alone, on a broken variant of a real recorded resource."""
from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import replace

import pytest

from policy import plan_check, rules


def test_the_pack_has_each_rule_once():
    assert len(set(rules.POLICY_NAMES)) == len(rules.POLICIES) == 11


@pytest.mark.parametrize("fixture", ["gpu_plan", "pipeline_plan"])
def test_every_policy_passes_on_the_stack(fixture, request):
    plan = request.getfixturevalue(fixture)
    assert plan.resources
    assert [str(v) for v in plan_check.check(plan.resources)] == []


def test_the_rules_have_resources_to_judge_in_both_stacks(plans):
    # Guards against a vacuous pass: each resource kind a rule judges is present in the recorded plans.
    types = Counter(r.type for p in plans for r in p.resources)
    for t in ("aws:dynamodb/table:Table", "aws:sqs/queue:Queue", "aws:sns/topic:Topic", "aws:cloudwatch/logGroup:LogGroup",
              "aws:ec2/launchTemplate:LaunchTemplate", rules.BUCKET, rules.BUCKET_ENCRYPTION, rules.BUCKET_POLICY,
              rules.PUBLIC_ACCESS_BLOCK, rules.TOPIC_POLICY, rules.QUEUE_POLICY, rules.BUCKET_LOGGING,
              "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:iam/rolePolicy:RolePolicy"):
        assert types[t] >= 1, t
    taggable = [r for p in plans for r in p.resources if rules.is_taggable(r.type)]
    assert len(taggable) > 40
    assert rules.is_taggable("aws:lambda/function:Function")
    assert not rules.is_taggable("aws:s3/bucketPolicy:BucketPolicy")


# -- broken variants -------------------------------------------------------------------------------
def _doc(props: dict, field: str = "policy") -> dict:
    return json.loads(props[field])


def _set_doc(props: dict, doc: dict, field: str = "policy") -> None:
    props[field] = json.dumps(doc)


def _statement(props: dict, sid: str, change) -> None:
    doc = _doc(props)
    for st in doc["Statement"]:
        if st.get("Sid") == sid:
            change(st)
    _set_doc(props, doc)


def _drop_statement(props: dict, sid: str) -> None:
    doc = _doc(props)
    doc["Statement"] = [st for st in doc["Statement"] if st.get("Sid") != sid]
    _set_doc(props, doc)


def _add_public_read(props: dict) -> None:
    doc = _doc(props)
    doc["Statement"].append({"Sid": "Anyone", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                             "Resource": "arn:aws:s3:::ml-pipeline-dev-raw-123456789012-us-east-1/*"})
    _set_doc(props, doc)


def _open_ingress(props: dict) -> None:
    props.pop("referencedSecurityGroupId")
    props["cidrIpv4"] = "0.0.0.0/0"


def _drop_tag(props: dict) -> None:
    props["tags"] = {k: v for k, v in props["tags"].items() if k != "CostCenter"}


def _ebs_unencrypted(props: dict) -> None:
    props["blockDeviceMappings"][0]["ebs"]["encrypted"] = "false"


GPU, PIPE = "gpu_plan", "pipeline_plan"
TABLE, LOGS = "aws:dynamodb/table:Table", "aws:cloudwatch/logGroup:LogGroup"
LT, SSM = "aws:ec2/launchTemplate:LaunchTemplate", "aws:ssm/parameter:Parameter"
INGRESS, ROLE_POLICY = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:iam/rolePolicy:RolePolicy"
DROP = None  # the variant removes the resource from the plan

# (policy that must fail, plan, resource type, resource name, how it is broken)
BROKEN = [
    ("encryption-at-rest-customer-key", PIPE, TABLE, "catalog", lambda p: p.update(serverSideEncryption={"enabled": True})),
    ("encryption-at-rest-customer-key", PIPE, rules.QUEUE, "ingest-queue", lambda p: p.update(kmsMasterKeyId="alias/aws/sqs")),
    ("encryption-at-rest-customer-key", GPU, rules.TOPIC, "alarms", lambda p: p.pop("kmsMasterKeyId")),
    ("encryption-at-rest-customer-key", GPU, LOGS, "training-logs", lambda p: p.pop("kmsKeyId")),
    ("encryption-at-rest-customer-key", GPU, LT, "gpu-lt", _ebs_unencrypted),
    ("encryption-at-rest-customer-key", GPU, SSM, "hparams-epochs", lambda p: p.pop("keyId")),
    ("s3-encryption-customer-key", PIPE, rules.BUCKET_ENCRYPTION, "lake-raw-encryption",
     lambda p: p.update(rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}])),
    ("s3-encryption-customer-key", GPU, rules.BUCKET_ENCRYPTION, "storage-artifacts-encryption", DROP),
    ("tls-only-resource-policies", PIPE, rules.BUCKET_POLICY, "lake-raw-policy",
     lambda p: _drop_statement(p, "DenyInsecureTransport")),
    ("tls-only-resource-policies", GPU, rules.TOPIC_POLICY, "alarms-policy",
     lambda p: _statement(p, "DenyInsecureTransport", lambda st: st.update(Condition={"Bool": {"aws:SecureTransport": "true"}}))),
    ("tls-only-resource-policies", PIPE, rules.QUEUE_POLICY, "ingest-dlq-policy", DROP),
    ("no-public-access", PIPE, rules.PUBLIC_ACCESS_BLOCK, "lake-processed-public-access",
     lambda p: p.update(restrictPublicBuckets=False)),
    ("no-public-access", GPU, rules.PUBLIC_ACCESS_BLOCK, "storage-training-data-public-access", DROP),
    ("no-public-access", PIPE, rules.BUCKET_POLICY, "lake-raw-policy", _add_public_read),
    ("required-tags", PIPE, "aws:lambda/function:Function", "ingest-fn", _drop_tag),
    ("required-tags", GPU, "aws:ec2/fleet:Fleet", "gpu-fleet", lambda p: p.pop("tags")),
    # Without the Stack tag the stack's budget (filtered on it) would not count the resource.
    ("required-tags", PIPE, rules.QUEUE, "ingest-dlq", lambda p: p["tags"].pop("Stack")),
    ("imdsv2-required", GPU, LT, "gpu-lt", lambda p: p["metadataOptions"].update(httpTokens="optional")),
    ("no-open-ingress", GPU, INGRESS, "network-fleet-from-fleet", _open_ingress),
    ("log-retention", PIPE, LOGS, "ingest-fn-logs", lambda p: p.pop("retentionInDays")),
    ("log-retention", GPU, LOGS, "network-flow-logs", lambda p: p.update(retentionInDays=0.0)),
    ("dynamodb-pitr", GPU, TABLE, "storage-experiments", lambda p: p.update(pointInTimeRecovery={"enabled": False})),
    ("no-wildcard-actions", PIPE, ROLE_POLICY, "ingest-fn-policy",
     lambda p: _statement(p, "WriteShards", lambda st: st.update(Action=["s3:*"]))),
    ("no-wildcard-actions", GPU, rules.KMS_KEY, "key-key",
     lambda p: _statement(p, "CloudWatchAlarms", lambda st: st.update(Action="kms:*"))),
    ("no-unscoped-resource", PIPE, ROLE_POLICY, "ingest-fn-policy",
     lambda p: _statement(p, "ReadRawImages", lambda st: st.update(Resource="*"))),
    ("no-unscoped-resource", GPU, ROLE_POLICY, "instance-policy",
     lambda p: _statement(p, "StackKey", lambda st: st.update(Resource=["*"]))),
]


def _variant(plan, resource_type, name, breaks):
    target = plan.one(resource_type, name)
    if breaks is DROP:
        return [r for r in plan.resources if r is not target]
    inputs, state = copy.deepcopy(target.inputs), copy.deepcopy(target.state)
    breaks(inputs)
    breaks(state)  # the mocked outputs echo the inputs: stack policies read them
    return [replace(r, inputs=inputs, state=state) if r is target else r for r in plan.resources]


@pytest.mark.parametrize("policy, fixture, resource_type, name, breaks", BROKEN,
                         ids=[f"{b[0]}-{b[3]}" for b in BROKEN])
def test_a_broken_resource_fails_exactly_its_policy(policy, fixture, resource_type, name, breaks, request):
    plan = request.getfixturevalue(fixture)
    violations = plan_check.check(_variant(plan, resource_type, name, breaks))
    assert {v.policy for v in violations} == {policy}, [str(v) for v in violations]


def test_every_policy_has_a_broken_variant():
    assert {b[0] for b in BROKEN} == set(rules.POLICY_NAMES)


def test_the_access_log_bucket_is_the_only_sse_s3_exception(pipeline_plan):
    # The log bucket uses SSE-S3 because S3 server access logging cannot write SSE-KMS objects; once no
    # bucket logs into it, the exception no longer holds.
    without_logging = [r for r in pipeline_plan.resources if r.type != rules.BUCKET_LOGGING]
    violations = plan_check.check(without_logging, [p for p in rules.POLICIES if p.name == "s3-encryption-customer-key"])
    assert [v.urn.rsplit("::", 1)[-1] for v in violations] == ["lake-logs-encryption"]


def test_the_pack_entry_point_serves_every_policy(monkeypatch):
    # Constructing the real PolicyPack starts the analyzer server and blocks: record the call instead.
    import runpy
    from pathlib import Path

    import pulumi_policy
    seen = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda name, policies, **kw: seen.update(name=name, policies=policies))
    runpy.run_path(str(Path(rules.__file__).with_name("__main__.py")), run_name="__main__")
    assert seen["name"] == "mlplatform-compliance"
    assert [p.name for p in seen["policies"]] == list(rules.POLICY_NAMES)
