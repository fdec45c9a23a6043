"""The offline plan: what `pulumi up` would create for each project's stack, without credentials or CLI.

    python -m offline.plan --stack dev ml-pipeline gpu-training [--json]

gpu-training runs first so the pipeline's StackReference to it (if configured) gets its exports.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from offline import runner

# Settings worth a line in the human-readable plan, by resource type (camelCase inputs as AWS gets them).
_KEY_SETTINGS = {
    "aws:s3/bucket:Bucket": ["bucket"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ["rules"],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ["rules"],
    "aws:kms/key:Key": ["enableKeyRotation", "deletionWindowInDays"],
    "aws:dynamodb/table:Table": ["name", "billingMode", "hashKey", "rangeKey", "globalSecondaryIndexes",
                                 "pointInTimeRecovery", "deletionProtectionEnabled"],
    "aws:lambda/function:Function": ["name", "runtime", "architectures", "memorySize", "timeout",
                                     "reservedConcurrentExecutions", "code", "layers"],
    "aws:lambda/layerVersion:LayerVersion": ["layerName", "code", "compatibleArchitectures"],
    "aws:lambda/eventSourceMapping:EventSourceMapping": ["batchSize", "maximumBatchingWindowInSeconds",
                                                         "scalingConfig", "functionResponseTypes"],
    "aws:sqs/queue:Queue": ["name", "visibilityTimeoutSeconds", "redrivePolicy", "kmsMasterKeyId"],
    "aws:cloudwatch/metricAlarm:MetricAlarm": ["name", "metricName", "namespace", "threshold",
                                               "comparisonOperator", "treatMissingData"],
    "aws:cloudwatch/eventRule:EventRule": ["name", "eventPattern"],
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/subnet:Subnet": ["cidrBlock", "availabilityZone", "mapPublicIpOnLaunch"],
    "aws:ec2/fleet:Fleet": ["type", "targetCapacitySpecification", "spotOptions", "terminateInstances",
                            "replaceUnhealthyInstances"],
    "aws:ec2/launchTemplate:LaunchTemplate": ["imageId", "metadataOptions", "blockDeviceMappings"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["serviceName", "vpcEndpointType"],
    "aws:ssm/parameter:Parameter": ["name", "type"],
    "aws:cloudwatch/logGroup:LogGroup": ["name", "retentionInDays"],
}


def _plain(value: Any) -> Any:
    """JSON fallback: assets and archives by their path."""
    path = getattr(value, "path", None)
    return {"fileArchive": path} if path else str(value)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=_plain)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


def render_text(plan: runner.Plan) -> str:
    lines = [f"== {plan.project} / {plan.stack}: {len(plan.resources)} resources to create"]
    if plan.error:
        lines.append(f"!! CONFIG ERROR: {plan.error}")
        return "\n".join(lines)
    lines.extend(f"!! warning: {w}" for w in plan.warnings)
    for r in sorted(plan.resources, key=lambda r: (r.type, r.name)):
        parent = _name_of(r.parent)
        lines.append(f"  + {r.type}  {r.name}" + (f"  (in {parent})" if parent and parent != plan.project + "-" + plan.stack else ""))
        for key in _KEY_SETTINGS.get(r.type, []):
            if r.inputs.get(key) is not None:
                lines.append(f"      {key}: {_short(r.inputs[key])}")
    lines.append("  outputs:")
    for key, value in sorted(plan.outputs.items()):
        lines.append(f"    {key}: {_short(value, 200)}")
    return "\n".join(lines)


def to_json(plan: runner.Plan) -> dict:
    return {
        "project": plan.project, "stack": plan.stack, "error": plan.error, "warnings": plan.warnings,
        "resources": [{"type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent, "inputs": r.inputs}
                      for r in plan.resources],
        "outputs": plan.outputs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("projects", nargs="*", default=["gpu-training", "ml-pipeline"])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--json", action="store_true", help="print one JSON document for machines")
    parser.add_argument("--set", action="append", default=[], metavar="PROJECT:KEY=VALUE",
                        help="override a stack-file config value for this plan only (repeatable)")
    args = parser.parse_args(argv)

    known = runner.projects()
    unknown = [p for p in args.projects if p not in known]
    if unknown:
        parser.error(f"unknown project(s) {unknown}; known: {sorted(known)}")
    # gpu-training first: its exports answer the pipeline's StackReference.
    order = sorted(args.projects, key=lambda p: p != "gpu-training")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or ":" not in key:
            parser.error(f"--set takes PROJECT:KEY=VALUE, got {item!r}")
        overrides[key] = value
    plans, exports = [], {}
    for name in order:
        mine = {k: v for k, v in overrides.items() if k.split(":")[0] in (name, "aws")}
        plan = runner.run(known[name], args.stack, config_overrides=mine, stack_outputs=exports, raise_errors=False)
        plans.append(plan)
        exports.update(_exports_as_references(plan))
    if args.json:
        json.dump([to_json(p) for p in plans], sys.stdout, indent=2, default=_plain)
        print()
    else:
        print("\n\n".join(render_text(p) for p in plans))
    return 1 if any(p.error for p in plans) else 0


def _exports_as_references(plan: runner.Plan) -> dict[str, dict]:
    """The plan's exports under every name a StackReference may use for it."""
    if plan.error:
        return {}
    return {name: plan.outputs for name in (f"{plan.project}/{plan.stack}", f"organization/{plan.project}/{plan.stack}")}


if __name__ == "__main__":
    sys.exit(main())
