"""The compliance rules of both stacks (issue 11), as CrossGuard policies.

One set of rules, two uses: `policy/__main__.py` serves them to `pulumi preview --policy-pack policy`,
and the tests run them over the recorded plans of both stacks (`policy/offline.py`). A policy receives
what the engine sends: a resource's inputs (resource policies) or every resource's outputs (stack
policies), camelCase, wrapped in proxies that are ``Mapping``/``Sequence`` but not ``dict``/``list``,
and that raise ``UnknownValueError`` on a value a preview cannot know yet (the engine then reports that
the policy could not run, rather than passing it).

Rules that must relate two resources (a bucket and its encryption configuration, policy or public access
block) are stack policies; the rest look at one resource.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from shared.iam import NO_RESOURCE_LEVEL_ACTIONS
from shared.tagging import REQUIRED_TAG_KEYS

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_LOGGING = "aws:s3/bucketLogging:BucketLogging"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
KMS_KEY = "aws:kms/key:Key"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
ROLE = "aws:iam/role:Role"

# Identity policies: the documents that give a principal permissions.
IDENTITY_DOCUMENTS = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
# Resource policies: documents attached to a resource that say who may use it.
RESOURCE_DOCUMENTS = {
    BUCKET_POLICY: "policy",
    TOPIC_POLICY: "policy",
    QUEUE_POLICY: "policy",
    TOPIC: "policy",
    QUEUE: "policy",
    KMS_KEY: "policy",
    VPC_ENDPOINT: "policy",
    ROLE: "assumeRolePolicy",
    "aws:kinesis/resourcePolicy:ResourcePolicy": "policy",
    "aws:secretsmanager/secretPolicy:SecretPolicy": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:apigateway/restApiPolicy:RestApiPolicy": "policy",
}
AWS_MANAGED_KEY_ALIASES = ("alias/aws/",)


# -- reading what the engine sends ----------------------------------------------------------------
def _get(props: Any, *path: Any, default: Any = None) -> Any:
    """``props[path[0]][path[1]]...`` or ``default`` when a step is missing."""
    value = props
    for step in path:
        if isinstance(value, Mapping):
            if step not in value:
                return default
            value = value[step]
        elif isinstance(value, Sequence) and not isinstance(value, str) and isinstance(step, int):
            if step >= len(value):
                return default
            value = value[step]
        else:
            return default
    return default if value is None else value


def _items(value: Any) -> list:
    """A value that may be one item or a list of them, as a list (AWS documents allow both)."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _truthy(value: Any) -> bool:
    # pulumi-aws types some flags as strings ("true" in launch template EBS settings).
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _document(value: Any) -> Optional[dict]:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return json.loads(value)
    if isinstance(value, Mapping):
        return json.loads(json.dumps(value, default=lambda v: v["__target"]))
    return None


def _statements(doc: Optional[dict]) -> list[dict]:
    return [s for s in _items((doc or {}).get("Statement")) if isinstance(s, Mapping)]


def _is_customer_key(key_id: Any) -> bool:
    return isinstance(key_id, str) and bool(key_id) and not any(a in key_id for a in AWS_MANAGED_KEY_ALIASES)


@functools.lru_cache(maxsize=None)
def is_taggable(resource_type: str) -> bool:
    """True when the pulumi-aws resource of this type takes a ``tags`` input (the rule
    shared/tagging.py applies when it tags every resource of a stack)."""
    package, _, rest = resource_type.partition(":")
    module, _, kind = rest.partition(":")
    if package != "aws" or not kind:
        return False
    module = module.split("/")[0]
    # Python keywords get a trailing underscore (aws:lambda/... lives in pulumi_aws.lambda_).
    for name in ("pulumi_aws" if module == "index" else f"pulumi_aws.{module}", f"pulumi_aws.{module}_"):
        try:
            init = getattr(getattr(importlib.import_module(name), kind), "_internal_init")
        except (ImportError, AttributeError):
            continue
        return "tags" in inspect.signature(init).parameters
    return False


# -- one resource ----------------------------------------------------------------------------------
def _encryption_problems(resource_type: str, props: Mapping) -> list[str]:
    if resource_type == "aws:dynamodb/table:Table":
        if not (_get(props, "serverSideEncryption", "enabled") is True
                and _is_customer_key(_get(props, "serverSideEncryption", "kmsKeyArn"))):
            return ["DynamoDB table without serverSideEncryption by a customer managed key (kmsKeyArn)"]
    elif resource_type == QUEUE:
        if not _is_customer_key(_get(props, "kmsMasterKeyId")):
            return ["SQS queue without kmsMasterKeyId of a customer managed key (SSE-SQS or alias/aws/sqs is not)"]
    elif resource_type == TOPIC:
        if not _is_customer_key(_get(props, "kmsMasterKeyId")):
            return ["SNS topic without kmsMasterKeyId of a customer managed key"]
    elif resource_type == "aws:cloudwatch/logGroup:LogGroup":
        if not _is_customer_key(_get(props, "kmsKeyId")):
            return ["log group without kmsKeyId"]
    elif resource_type == "aws:kinesis/stream:Stream":
        if _get(props, "encryptionType") != "KMS" or not _is_customer_key(_get(props, "kmsKeyId")):
            return ["Kinesis stream without encryptionType KMS and a customer managed kmsKeyId"]
    elif resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        out = []
        for mapping in _items(_get(props, "blockDeviceMappings")):
            ebs = _get(mapping, "ebs")
            if ebs is None:
                continue  # an instance-store (ephemeral) mapping has no EBS volume
            if not (_truthy(_get(ebs, "encrypted")) and _is_customer_key(_get(ebs, "kmsKeyId"))):
                out.append(f"launch template volume {_get(mapping, 'deviceName')} not encrypted with a customer managed kmsKeyId")
        return out
    elif resource_type == "aws:ebs/volume:Volume":
        if not (_truthy(_get(props, "encrypted")) and _is_customer_key(_get(props, "kmsKeyId"))):
            return ["EBS volume not encrypted with a customer managed kmsKeyId"]
    elif resource_type == "aws:ssm/parameter:Parameter":
        if _get(props, "type") == "SecureString" and not _is_customer_key(_get(props, "keyId")):
            return ["SecureString parameter without keyId of a customer managed key (alias/aws/ssm is not)"]
    elif resource_type == "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        out = []
        if not _is_customer_key(_get(props, "kmsKeyArn")):
            out.append("SageMaker endpoint configuration without kmsKeyArn (the instances' storage volumes)")
        if _get(props, "dataCaptureConfig") is not None and not _is_customer_key(_get(props, "dataCaptureConfig", "kmsKeyId")):
            out.append("SageMaker data capture without kmsKeyId")
        return out
    elif resource_type == "aws:sagemaker/notebookInstance:NotebookInstance":
        if not _is_customer_key(_get(props, "kmsKeyId")):
            return ["SageMaker notebook instance without kmsKeyId"]
    return []


def _check_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for problem in _encryption_problems(args.resource_type, args.props):
        report(problem, None)


def _check_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not is_taggable(args.resource_type):
        return
    tags = _get(args.props, "tags", default={})
    missing = [k for k in REQUIRED_TAG_KEYS if not _get(tags, k)]
    if missing:
        report(f"missing required tags {missing} (shared/tagging.py applies them to every taggable resource)", None)


def _check_imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"):
        if _get(args.props, "metadataOptions", "httpTokens") != "required":
            report("instance metadata without httpTokens 'required' (IMDSv2 only)", None)
    elif args.resource_type == "aws:sagemaker/notebookInstance:NotebookInstance":
        version = _get(args.props, "instanceMetadataServiceConfiguration", "minimumInstanceMetadataServiceVersion")
        if version != "2":
            report("notebook instance without minimumInstanceMetadataServiceVersion 2", None)


_OPEN = {"0.0.0.0/0", "::/0"}


def _check_open_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    t, props = args.resource_type, args.props
    rules: list = []
    if t in ("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"):
        rules = _items(_get(props, "ingress"))
    elif t == "aws:ec2/securityGroupRule:SecurityGroupRule" and _get(props, "type") == "ingress":
        rules = [props]
    for rule in rules:
        ranges = set(_items(_get(rule, "cidrBlocks"))) | set(_items(_get(rule, "ipv6CidrBlocks")))
        if ranges & _OPEN:
            report(f"ingress from {sorted(ranges & _OPEN)}", None)
    if t == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        ranges = {_get(props, "cidrIpv4"), _get(props, "cidrIpv6")} & _OPEN
        if ranges:
            report(f"ingress from {sorted(ranges)}", None)


def _check_log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:cloudwatch/logGroup:LogGroup":
        days = _get(args.props, "retentionInDays")
        if not isinstance(days, (int, float)) or days <= 0:
            report("log group without retentionInDays (logs would be kept, and billed, forever)", None)


def _check_pitr(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:dynamodb/table:Table":
        if _get(args.props, "pointInTimeRecovery", "enabled") is not True:
            report("DynamoDB table without pointInTimeRecovery enabled", None)


def documents(resource_type: str, props: Mapping) -> list[tuple[str, str, dict]]:
    """(kind, field, document) of every IAM document in a resource's properties; kind is 'identity'
    or 'resource'."""
    found = []
    if resource_type in IDENTITY_DOCUMENTS:
        doc = _document(_get(props, IDENTITY_DOCUMENTS[resource_type]))
        if doc:
            found.append(("identity", IDENTITY_DOCUMENTS[resource_type], doc))
    if resource_type == ROLE:
        for inline in _items(_get(props, "inlinePolicies")):
            doc = _document(_get(inline, "policy"))
            if doc:
                found.append(("identity", "inlinePolicies", doc))
    if resource_type in RESOURCE_DOCUMENTS:
        doc = _document(_get(props, RESOURCE_DOCUMENTS[resource_type]))
        if doc:
            found.append(("resource", RESOURCE_DOCUMENTS[resource_type], doc))
    return found


def _is_account_root(principal: Any) -> bool:
    aws = _items(_get(principal, "AWS")) if isinstance(principal, Mapping) else []
    return bool(aws) and all(isinstance(p, str) and p.startswith("arn:aws") and p.endswith(":root") for p in aws)


def wildcard_problems(resource_type: str, kind: str, doc: dict) -> list[str]:
    out = []
    for st in _statements(doc):
        if st.get("Effect") != "Allow":
            continue  # a Deny may be as wide as it likes (the TLS-only statements deny s3:*)
        sid = st.get("Sid")
        if "NotAction" in st:
            out.append(f"statement {sid}: Allow with NotAction")
        for action in _items(st.get("Action")):
            if action == "*":
                out.append(f"statement {sid}: Action '*'")
            elif kind == "identity" and "*" in action:
                out.append(f"statement {sid}: wildcard action {action!r} in an identity policy")
            elif kind == "resource" and action.endswith(":*"):
                # AWS's default key policy: the account may manage its own key through IAM (without
                # it a key becomes unmanageable). Prefix wildcards such as kms:GenerateDataKey* are the
                # documented forms for CloudWatch Logs and EC2 Fleet and stay allowed.
                if not (resource_type == KMS_KEY and action == "kms:*" and _is_account_root(st.get("Principal"))):
                    out.append(f"statement {sid}: service wildcard {action!r}")
    return out


def _check_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for kind, field, doc in documents(args.resource_type, args.props):
        for problem in wildcard_problems(args.resource_type, kind, doc):
            report(f"{field}: {problem}", None)


def unscoped_problems(doc: dict) -> list[str]:
    out = []
    for st in _statements(doc):
        if st.get("Effect") != "Allow":
            continue
        if "NotResource" in st:
            out.append(f"statement {st.get('Sid')}: Allow with NotResource")
        if "*" in _items(st.get("Resource")):
            unscoped = sorted(a for a in _items(st.get("Action")) if a not in NO_RESOURCE_LEVEL_ACTIONS)
            if unscoped:
                out.append(f"statement {st.get('Sid')}: Resource '*' for actions with resource-level permissions {unscoped}")
    return out


def _check_unscoped(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for kind, field, doc in documents(args.resource_type, args.props):
        if kind == "identity":
            for problem in unscoped_problems(doc):
                report(f"{field}: {problem}", None)


# -- the stack -------------------------------------------------------------------------------------
_IDENTIFIERS = {BUCKET: ("bucket", "id"), TOPIC: ("arn",), QUEUE: ("url", "id", "arn")}


def _known(resource: PolicyResource, prop: str) -> Any:
    try:
        return _get(resource.props, prop)
    except UnknownValueError:
        return None


def _targets(source: PolicyResource, prop: str, target: PolicyResource) -> bool:
    """True when ``source``'s property ``prop`` names ``target``: by the engine's property dependencies
    (known in a preview) or by equal values (a recorded plan, or outputs after an update)."""
    deps = (source.property_dependencies or {}).get(prop) or []
    if any(getattr(d, "urn", None) == target.urn for d in deps):
        return True
    value = _known(source, prop)
    return value is not None and value in {_known(target, p) for p in _IDENTIFIERS.get(target.resource_type, ())}


def _of_type(resources: Iterable[PolicyResource], resource_type: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == resource_type]


def _safely(check: Callable[[], None]) -> None:
    # A stack policy reads many resources: one value a preview cannot know skips that check only.
    try:
        check()
    except UnknownValueError:
        pass


def _check_s3_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    configs = _of_type(resources, BUCKET_ENCRYPTION)
    loggings = _of_type(resources, BUCKET_LOGGING)
    for bucket in _of_type(resources, BUCKET):
        def check(bucket=bucket):
            mine = [c for c in configs if _targets(c, "bucket", bucket)]
            if not mine:
                report("bucket without a server-side encryption configuration (S3's default is SSE-S3, not a customer key)", bucket.urn)
                return
            # S3 server access logging cannot deliver to a bucket encrypted with SSE-KMS: the log
            # target bucket (only it) uses SSE-S3, as shared/bucket.py documents.
            log_target = any(_targets(log, "targetBucket", bucket) for log in loggings)
            for config in mine:
                for rule in _items(_get(config.props, "rules")):
                    default = _get(rule, "applyServerSideEncryptionByDefault", default={})
                    algorithm = _get(default, "sseAlgorithm")
                    if algorithm in ("aws:kms", "aws:kms:dsse") and _is_customer_key(_get(default, "kmsMasterKeyId")):
                        continue
                    if algorithm == "AES256" and log_target:
                        continue
                    report(f"bucket encrypted with {algorithm!r} rather than SSE-KMS with a customer managed key"
                           + ("" if log_target else " (only an access-log target bucket may use SSE-S3)"), config.urn)
        _safely(check)


def _denies_insecure_transport(doc: Optional[dict]) -> bool:
    for st in _statements(doc):
        principal = st.get("Principal")
        if st.get("Effect") != "Deny" or not (principal == "*" or _get(principal, "AWS") in ("*", ["*"])):
            continue
        condition = st.get("Condition") or {}
        for operator in ("Bool", "BoolIfExists"):
            if str(_get(condition, operator, "aws:SecureTransport")).lower() == "false":
                return True
    return False


# (resource type, its policy resource type, the policy's property naming the resource)
_TLS_TARGETS = ((BUCKET, BUCKET_POLICY, "bucket"), (TOPIC, TOPIC_POLICY, "arn"), (QUEUE, QUEUE_POLICY, "queueUrl"))


def _check_tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    for target_type, policy_type, prop in _TLS_TARGETS:
        policies = _of_type(resources, policy_type)
        for target in _of_type(resources, target_type):
            def check(target=target, policies=policies, prop=prop):
                docs = [_document(_known(p, "policy")) for p in policies if _targets(p, prop, target)]
                docs.append(_document(_known(target, "policy")))  # an inline policy counts too
                if not any(_denies_insecure_transport(d) for d in docs):
                    report("no resource policy denies requests without TLS (aws:SecureTransport false)", target.urn)
            _safely(check)


_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _is_anyone(principal: Any) -> bool:
    return principal == "*" or any(p == "*" for p in _items(_get(principal, "AWS")))


def public_problems(resource_type: str, doc: dict) -> list[str]:
    if resource_type == VPC_ENDPOINT:
        return []  # an endpoint policy filters what passes through the endpoint; it grants nothing itself
    return [f"statement {st.get('Sid')}: Allow to any principal without a condition (public)"
            for st in _statements(doc)
            if st.get("Effect") == "Allow" and _is_anyone(st.get("Principal")) and not st.get("Condition")]


def _check_public(args: StackValidationArgs, report: ReportViolation) -> None:
    resources = list(args.resources)
    blocks = _of_type(resources, PUBLIC_ACCESS_BLOCK)
    for block in blocks:
        def check_block(block=block):
            off = [f for f in _BLOCK_FLAGS if _get(block.props, f) is not True]
            if off:
                report(f"public access block without {off}", block.urn)
        _safely(check_block)
    for bucket in _of_type(resources, BUCKET):
        _safely(lambda bucket=bucket: None if any(_targets(b, "bucket", bucket) for b in blocks)
                else report("bucket without a public access block", bucket.urn))
    for resource in resources:
        def check_documents(resource=resource):
            for _, field, doc in documents(resource.resource_type, resource.props):
                if resource.resource_type in RESOURCE_DOCUMENTS and field == RESOURCE_DOCUMENTS[resource.resource_type]:
                    for problem in public_problems(resource.resource_type, doc):
                        report(f"{field}: {problem}", resource.urn)
            if resource.resource_type == "aws:lambda/permission:Permission" and _get(resource.props, "principal") == "*":
                if not (_get(resource.props, "sourceArn") or _get(resource.props, "sourceAccount")
                        or _get(resource.props, "principalOrgId")):
                    report("Lambda permission for any principal without a source condition (public)", resource.urn)
            if (resource.resource_type == "aws:lambda/functionUrl:FunctionUrl"
                    and _get(resource.props, "authorizationType") == "NONE"):
                report("Lambda function URL without authentication (public)", resource.urn)
        _safely(check_documents)


# -- the policies ----------------------------------------------------------------------------------
MANDATORY = EnforcementLevel.MANDATORY

POLICIES = [
    ResourceValidationPolicy(
        name="encryption-at-rest-customer-key",
        description="DynamoDB, SQS, SNS, CloudWatch Logs, Kinesis, EBS (launch templates, volumes), SecureString "
                    "parameters and SageMaker storage are encrypted with a customer managed KMS key.",
        validate=_check_encryption, enforcement_level=MANDATORY),
    StackValidationPolicy(
        name="s3-encryption-customer-key",
        description="Every bucket has default encryption SSE-KMS with a customer managed key; only the S3 "
                    "access-log target bucket uses SSE-S3 (server access logging cannot write SSE-KMS).",
        validate=_check_s3_encryption, enforcement_level=MANDATORY),
    StackValidationPolicy(
        name="tls-only-resource-policies",
        description="Every bucket, topic and queue has a resource policy that denies requests without TLS.",
        validate=_check_tls_only, enforcement_level=MANDATORY),
    StackValidationPolicy(
        name="no-public-access",
        description="Every bucket has a public access block with all four settings on; no resource policy "
                    "allows any principal without a condition.",
        validate=_check_public, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="required-tags",
        description=f"Every taggable resource carries the tags {', '.join(REQUIRED_TAG_KEYS)}.",
        validate=_check_tags, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="imdsv2-required",
        description="Launch templates and instances require IMDSv2 session tokens.",
        validate=_check_imdsv2, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="no-open-ingress",
        description="No security group admits traffic from 0.0.0.0/0 or ::/0.",
        validate=_check_open_ingress, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="log-retention",
        description="Every log group has a retention period.",
        validate=_check_log_retention, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="dynamodb-pitr",
        description="Every DynamoDB table has point-in-time recovery.",
        validate=_check_pitr, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="no-wildcard-actions",
        description="No Allow statement grants Action '*' or NotAction; identity policies name every action; "
                    "resource policies grant no service wildcard (except the key's own-account kms:*).",
        validate=_check_wildcards, enforcement_level=MANDATORY),
    ResourceValidationPolicy(
        name="no-unscoped-resource",
        description="Identity policies use Resource '*' only for actions without resource-level permissions "
                    "(shared/iam.py NO_RESOURCE_LEVEL_ACTIONS).",
        validate=_check_unscoped, enforcement_level=MANDATORY),
]
POLICY_NAMES = tuple(p.name for p in POLICIES)
