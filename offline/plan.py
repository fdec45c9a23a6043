"""The offline plan: what `pulumi up` would create for each project's stack, without credentials or CLI.

    python -m offline.plan --stack dev ml-pipeline gpu-training [--json] [--set PROJECT:KEY=VALUE ...]

gpu-training runs first so the pipeline's StackReference to it (if configured) gets its exports: any
`<org>/gpu-training/<stack>` resolves to the gpu-training stack planned in the same run.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pulumi

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
                                     "reservedConcurrentExecutions", "code", "layers", "loggingConfig"],
    "aws:lambda/layerVersion:LayerVersion": ["layerName", "code", "compatibleArchitectures"],
    "aws:lambda/eventSourceMapping:EventSourceMapping": ["batchSize", "maximumBatchingWindowInSeconds",
                                                         "scalingConfig", "functionResponseTypes",
                                                         "bisectBatchOnFunctionError", "maximumRetryAttempts"],
    "aws:sqs/queue:Queue": ["name", "visibilityTimeoutSeconds", "redrivePolicy", "kmsMasterKeyId"],
    "aws:cloudwatch/metricAlarm:MetricAlarm": ["name", "metricName", "namespace", "threshold",
                                               "comparisonOperator", "treatMissingData"],
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": ["alarmName", "alarmRule"],
    "aws:cloudwatch/dashboard:Dashboard": ["dashboardName"],
    "aws:cloudwatch/eventRule:EventRule": ["name", "eventPattern"],
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/subnet:Subnet": ["cidrBlock", "availabilityZone", "mapPublicIpOnLaunch"],
    "aws:ec2/fleet:Fleet": ["type", "targetCapacitySpecification", "spotOptions", "terminateInstances",
                            "replaceUnhealthyInstances"],
    "aws:ec2/launchTemplate:LaunchTemplate": ["imageId", "metadataOptions", "blockDeviceMappings"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["serviceName", "vpcEndpointType"],
    "aws:ssm/parameter:Parameter": ["name", "type"],
    "aws:ssm/document:Document": ["name", "documentType"],
    "aws:cloudwatch/logGroup:LogGroup": ["name", "retentionInDays"],
    "aws:sfn/stateMachine:StateMachine": ["name", "type", "loggingConfiguration", "tracingConfiguration"],
    "aws:scheduler/schedule:Schedule": ["name", "scheduleExpression", "scheduleExpressionTimezone", "state"],
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": ["modelPackageGroupName"],
    "aws:kinesis/stream:Stream": ["name", "streamModeDetails", "encryptionType"],
    "aws:apigateway/restApi:RestApi": ["name", "endpointConfiguration"],
    "aws:apigateway/stage:Stage": ["stageName", "xrayTracingEnabled"],
    "aws:budgets/budget:Budget": ["name", "limitAmount", "limitUnit", "timeUnit"],
}


def _archive_summary(archive: Any) -> dict:
    """An asset archive by its folder and a content hash that changes only when its files do."""
    digest, files, roots = hashlib.sha256(), 0, set()

    def walk(name: str, item: Any) -> None:
        nonlocal files
        if isinstance(item, pulumi.AssetArchive):
            for child_name in sorted(item.assets):
                walk(f"{name}/{child_name}" if name else child_name, item.assets[child_name])
        elif isinstance(item, (pulumi.FileAsset, pulumi.FileArchive)):
            path = Path(item.path)
            roots.add(_relative(path.parent if isinstance(item, pulumi.FileAsset) else path))
            paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for p in paths:
                files += 1
                digest.update(f"{name}:{p.name}\0".encode())
                digest.update(p.read_bytes() if p.is_file() else b"<missing>")
        elif isinstance(item, pulumi.StringAsset):
            files += 1
            digest.update(f"{name}\0{item.text}".encode())

    walk("", archive)
    return {"archive": sorted(roots)[0] if len(roots) == 1 else sorted(roots), "files": files,
            "sha256": digest.hexdigest()[:16]}


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(runner.REPO))
    except ValueError:
        return str(path)


def _plain(value: Any) -> Any:
    """Plan values as a person reads them: whole numbers as integers, archives by folder and hash."""
    if isinstance(value, (pulumi.Archive, pulumi.Asset)):
        return _archive_summary(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(_plain(value), sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _component_tree(plan: runner.Plan) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Children URNs by parent URN, over every registration (components and resources)."""
    children: dict[str, list[str]] = {}
    for urn, reg in plan.registrations.items():
        if reg.get("read"):
            continue
        children.setdefault(reg.get("parent") or "", []).append(urn)
    return children, plan.registrations


def render_text(plan: runner.Plan, cost: Optional[str] = None) -> str:
    if plan.error:
        return "\n".join([f"== {plan.project} / {plan.stack}: NOT PLANNED, the program failed",
                          f"!! {plan.error}"])
    lines = [f"== {plan.project} / {plan.stack}: {len(plan.resources)} resources to create"]
    lines.extend(f"!! warning: {w}" for w in plan.warnings)
    by_urn = {r.urn: r for r in plan.resources}
    children, registrations = _component_tree(plan)
    stack_urns = [u for u in children if u and registrations.get(u) is None]

    def emit(urn: str, depth: int) -> None:
        reg = registrations[urn]
        indent = "  " * depth
        record = by_urn.get(urn)
        if record is None:  # a component: its type token, its name, then what it holds
            lines.append(f"{indent}[{reg['type']}] {reg['name']}")
        else:
            lines.append(f"{indent}+ {record.type}  {record.name}")
            for key in _KEY_SETTINGS.get(record.type, []):
                if record.inputs.get(key) is not None:
                    lines.append(f"{indent}    {key}: {_short(record.inputs[key])}")
        for child in sorted(children.get(urn, []), key=_order(registrations, by_urn)):
            emit(child, depth + 1)

    roots = [u for parent in ("", *stack_urns) for u in children.get(parent, [])]
    for urn in sorted(roots, key=_order(registrations, by_urn)):
        emit(urn, 1)
    lines.append("  outputs:")
    for key, value in sorted(plan.outputs.items()):
        lines.append(f"    {key}: {_short(value, 200)}")
    if cost:
        lines.append(cost)
    return "\n".join(lines)


def _order(registrations: dict, by_urn: dict) -> Callable[[str], tuple]:
    # Components first, then resources, each by type and name: stable between runs.
    return lambda urn: (urn in by_urn, registrations[urn]["type"], registrations[urn]["name"])


def to_json(plan: runner.Plan, cost: Optional[dict] = None) -> dict:
    return {
        "project": plan.project, "stack": plan.stack, "error": plan.error, "warnings": plan.warnings,
        "resources": [] if plan.error else [
            {"type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent, "inputs": _plain(r.inputs)}
            for r in plan.resources],
        "outputs": _plain(plan.outputs),
        "monthly_cost": cost,
    }


def _parse_overrides(items: list[str], planned: list[str], known: dict[str, runner.Project],
                     fail: Callable[[str], None]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        project, colon, name = key.partition(":")
        if not sep or not colon or not name:
            fail(f"--set takes PROJECT:KEY=VALUE, got {item!r}")
        if project != "aws" and project not in planned:
            hint = _nearest(project, [*known, "aws"])
            if project in known:
                fail(f"--set {key}: {project} is not being planned in this run (planned: {', '.join(planned)})")
            fail(f"--set {key}: {project!r} is not a project{hint}; projects: {', '.join(sorted(known))}, "
                 f"or aws for the provider's keys")
        overrides[key] = value
    return overrides


def _nearest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close and word.replace("_", "-") in candidates:
        close = [word.replace("_", "-")]
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_keys(plan: runner.Plan, overrides: dict[str, str]) -> list[str]:
    """--set keys of this project that its program never read: a typo, or a key that reaches nothing."""
    if plan.error:  # a failed program read only part of its keys
        return []
    mine = [k for k in overrides if k.split(":")[0] == plan.project]
    read = list(plan.keys_read)
    return [f"--set {k}: {plan.project} has no config key {k.split(':', 1)[1]!r}{_nearest(k, read)}"
            for k in mine if k not in plan.keys_read]


def _explain(plan: runner.Plan, planned: list[str]) -> runner.Plan:
    """A StackReference to a stack this run does not plan: say how to include it."""
    if plan.error and plan.error.startswith("UnplannedStackError"):
        plan.error += (f". Plan that stack in the same run (python -m offline.plan --stack {plan.stack} "
                       f"gpu-training {' '.join(p for p in planned if p != 'gpu-training')}), "
                       f"or leave the reference unset (--set {plan.project}:gpuTrainingStack=)")
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("projects", nargs="*", default=["gpu-training", "ml-pipeline"])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--json", action="store_true", help="print one JSON document for machines")
    parser.add_argument("--set", action="append", default=[], metavar="PROJECT:KEY=VALUE",
                        help="override a stack-file config value for this plan only (repeatable; an empty "
                             "VALUE unsets the key)")
    args = parser.parse_args(argv)

    known = runner.projects()
    unknown = [p for p in args.projects if p not in known]
    if unknown:
        parser.error(f"unknown project(s) {unknown}{_nearest(unknown[0], list(known))}; known: {sorted(known)}")
    for name in args.projects:
        if args.stack not in known[name].stacks():
            parser.error(f"{name} has no stack {args.stack!r}; its stacks: {', '.join(known[name].stacks())} "
                         f"(a stack is a Pulumi.<stack>.yaml file beside the project's Pulumi.yaml)")
    # gpu-training first: its exports answer the pipeline's StackReference.
    order = sorted(dict.fromkeys(args.projects), key=lambda p: p != "gpu-training")
    overrides = _parse_overrides(args.set, order, known, parser.error)
    plans, exports, problems = [], {}, []
    for name in order:
        mine = {k: (v or None) for k, v in overrides.items() if k.split(":")[0] in (name, "aws")}
        plan = runner.run(known[name], args.stack, config_overrides=mine, stack_outputs=exports, raise_errors=False)
        plans.append(_explain(plan, order))
        problems += _unknown_keys(plan, overrides)
        if not plan.error:
            exports[f"{plan.project}/{plan.stack}"] = plan.outputs
    if problems:
        parser.error("; ".join(problems))
    estimates = [_estimate(p) for p in plans]
    if args.json:
        json.dump([to_json(p, e and e.to_json()) for p, e in zip(plans, estimates)], sys.stdout, indent=2,
                  default=str)
        print()
    else:
        print("\n\n".join(render_text(p, e and _render_cost(e)) for p, e in zip(plans, estimates)))
    return 1 if any(p.error for p in plans) else 0


def _estimate(plan: runner.Plan) -> Any:
    """The stack's monthly cost at list price (offline/cost.py; absent until that estimate exists)."""
    if plan.error:
        return None
    try:
        from offline import cost
    except ImportError:
        return None
    return cost.estimate(plan)


def _render_cost(estimate: Any) -> str:
    from offline import cost
    return cost.render_table(estimate)


if __name__ == "__main__":
    sys.exit(main())
