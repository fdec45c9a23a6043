"""What a stack costs a month, from its offline plan and dated list prices (issue 11).

    estimate(plan) -> Estimate        rows (item, quantity, unit, unit price, monthly USD, note) and a total
    render_table(estimate) -> str     the table the offline plan prints
    Estimate.to_json() -> dict        what `offline.plan --json` carries

Everything is read from the plan: the recorded resources (fleet capacity and instance types, NAT gateways,
interface endpoints, endpoint variants, streams, functions, lifecycle rules, log retention, keys, alarms)
and its outputs. Prices come from one data file per region, `offline/prices/<region>.json`, where each
price has its date and source. What the plan cannot know (how much data flows) is the `Workload`, whose
default is the issue's 1 TB of images a day; each row's note says which assumption it rests on.
A month is 730 hours. Free tiers are ignored (they are per account, not per stack).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

PRICES_DIR = Path(__file__).resolve().parent / "prices"
HOURS = 730.0
DAYS = HOURS / 24.0


@dataclass(frozen=True)
class Workload:
    """The traffic a plan cannot show; every figure is an assumption named in the rows that use it."""

    images_tb_per_day: float = 1.0           # uploads to the raw prefix (issue 11: 1 TB a day)
    mean_image_mb: float = 1.0               # 1 TB/day = 1,000,000 images/day (about 12 a second)
    ingest_seconds_per_image: float = 0.25   # function time per image (decode, strip, resize, shard, catalog)
    shard_bytes_ratio: float = 0.05          # processed shard bytes per raw byte (resized JPEGs)
    catalog_item_kb: float = 1.0             # one catalog item per image
    log_bytes_per_image: float = 600.0       # the ingest function's JSON log lines per image
    retained_days_without_expiry: float = 365.0  # data no lifecycle rule expires: a year's accumulation
    nat_gb_per_instance_day: float = 2.0     # packages, images, AWS APIs without an endpoint
    instance_log_gb_per_day: float = 0.1     # training and system logs per GPU instance
    flow_log_gb_per_day: float = 0.5         # VPC flow logs
    interface_endpoint_gb_per_day: float = 1.0
    kinesis_gb_per_day: float = 1.0          # per stream, read once
    other_table_gb: float = 1.0              # tables other than the image catalog

    @property
    def images_per_day(self) -> float:
        return self.images_tb_per_day * 1_000_000 / self.mean_image_mb


@dataclass(frozen=True)
class Row:
    item: str
    quantity: float
    unit: str
    unit_price: float
    monthly_usd: float
    note: str = ""
    in_total: bool = True


@dataclass
class Estimate:
    project: str
    stack: str
    region: str
    rows: list[Row]
    workload: Workload
    price_dates: tuple[str, str]
    warnings: list[str] = field(default_factory=list)
    unverified_prices: list[str] = field(default_factory=list)  # keys this estimate used that no source confirmed

    @property
    def total(self) -> float:
        return round(sum(r.monthly_usd for r in self.rows if r.in_total), 2)

    def to_json(self) -> dict:
        return {
            "project": self.project, "stack": self.stack, "region": self.region, "currency": "USD",
            "total_monthly_usd": self.total,
            "prices_dated": {"oldest": self.price_dates[0], "newest": self.price_dates[1]},
            "rows": [asdict(r) for r in self.rows],
            "workload": asdict(self.workload),
            "warnings": list(self.warnings),
            "unverified_prices": list(self.unverified_prices),
        }


class Prices:
    """One region's price file. A price is looked up by key; a missing one is an error naming the key."""

    def __init__(self, region: str):
        path = PRICES_DIR / f"{region}.json"
        if not path.is_file():
            raise ValueError(f"aws:region {region!r}: no price file {path.name} in offline/prices/")
        self.document = json.loads(path.read_text())
        self.region = self.document["region"]
        self.entries: dict[str, dict] = self.document["prices"]
        self.used: set[str] = set()

    def usd(self, key: str) -> float:
        if key not in self.entries:
            raise KeyError(f"no price {key!r} in offline/prices/{self.region}.json")
        self.used.add(key)
        return float(self.entries[key]["usd"])

    def unverified_used(self) -> list[str]:
        """Keys looked up so far whose entry carries ``unverified`` (typed from memory, not yet checked)."""
        return sorted(k for k in self.used if self.entries[k].get("unverified"))

    def has(self, key: str) -> bool:
        return key in self.entries

    def dates(self) -> tuple[str, str]:
        dates = sorted(e["date"] for e in self.entries.values())
        return dates[0], dates[-1]


# -- reading the plan ------------------------------------------------------------------------------
def _of_type(plan, resource_type: str) -> list:
    return [r for r in plan.resources if r.type == resource_type]


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _get(value: Any, *path: Any, default: Any = None) -> Any:
    for step in path:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            return default
    return default if value is None else value


class _Rows:
    def __init__(self, prices: Prices):
        self.prices, self.rows, self.warnings = prices, [], []

    def add(self, item: str, quantity: float, key: str, note: str = "", *, per: float = 1.0,
            in_total: bool = True) -> None:
        """``quantity`` in the price's unit times ``per`` (e.g. requests, priced per 1,000)."""
        if quantity <= 0:
            return
        if not self.prices.has(key):
            self.warnings.append(f"{item}: no price {key!r} in the price file; not counted")
            return
        unit_price = self.prices.usd(key)
        unit = self.prices.entries[key]["unit"]
        self.rows.append(Row(item, round(quantity / per, 4), unit, unit_price,
                             round(quantity / per * unit_price, 2), note, in_total))


# -- compute and network -----------------------------------------------------------------------------
def _fleet_rows(plan, out: _Rows) -> float:
    """Rows of every EC2 Fleet; returns the instances they keep running."""
    instances_total = 0.0
    templates = {r.state.get("id") or r.id: r for r in _of_type(plan, "aws:ec2/launchTemplate:LaunchTemplate")}
    for fleet in _of_type(plan, "aws:ec2/fleet:Fleet"):
        spec = fleet.inputs.get("targetCapacitySpecification") or {}
        total = _num(spec.get("totalTargetCapacity"))
        on_demand = _num(spec.get("onDemandTargetCapacity"))
        spot = _num(spec.get("spotTargetCapacity"), total - on_demand)
        types: list[str] = []
        template = None
        for config in fleet.inputs.get("launchTemplateConfigs") or []:
            template = templates.get(_get(config, "launchTemplateSpecification", "launchTemplateId")) or template
            for override in config.get("overrides") or []:
                if override.get("instanceType") and override["instanceType"] not in types:
                    types.append(override["instanceType"])
        if not types and template is not None and template.inputs.get("instanceType"):
            types.append(template.inputs["instanceType"])
        if not types or total <= 0:
            out.warnings.append(f"fleet {fleet.name}: no instance type or capacity in the plan; not counted")
            continue
        chosen = types[0]
        others = f"; the fleet may also pick {', '.join(types[1:])}" if len(types) > 1 else ""
        out.add(f"GPU fleet {fleet.name}: {spot:g} x {chosen} Spot", spot * HOURS, f"ec2.spot.{chosen}",
                f"kept running around the clock (type maintain){others}")
        out.add(f"GPU fleet {fleet.name}: {on_demand:g} x {chosen} on-demand", on_demand * HOURS,
                f"ec2.ondemand.{chosen}", "the fleet's on-demand share")
        out.add(f"GPU fleet {fleet.name} without Spot (comparison)", total * HOURS, f"ec2.ondemand.{chosen}",
                "not in the total: the same fleet at on-demand prices", in_total=False)
        volume_gb = sum(_num(_get(m, "ebs", "volumeSize")) for m in (template.inputs.get("blockDeviceMappings") or [])) \
            if template is not None else 0.0
        out.add(f"GPU fleet {fleet.name}: gp3 volumes", volume_gb * total, "ebs.gp3.storage",
                f"{volume_gb:g} GB per instance")
        instances_total += total
    return instances_total


def _network_rows(plan, out: _Rows, instances: float, w: Workload) -> None:
    nats = _of_type(plan, "aws:ec2/natGateway:NatGateway")
    out.add("NAT gateways", len(nats) * HOURS, "vpc.nat.hour", f"{len(nats)} gateway(s)")
    out.add("NAT gateways: Elastic IPs", len(_of_type(plan, "aws:ec2/eip:Eip")) * HOURS, "vpc.public_ipv4.hour")
    if nats:
        out.add("NAT gateways: data processed", instances * w.nat_gb_per_instance_day * DAYS, "vpc.nat.data",
                f"assumes {w.nat_gb_per_instance_day:g} GB per instance a day (S3 and DynamoDB use gateway endpoints)")
    interface = [e for e in _of_type(plan, "aws:ec2/vpcEndpoint:VpcEndpoint")
                 if e.inputs.get("vpcEndpointType") == "Interface"]
    enis = sum(max(1, len(e.inputs.get("subnetIds") or [])) for e in interface)
    out.add("Interface endpoints", enis * HOURS, "privatelink.interface.hour",
            f"{len(interface)} endpoint(s), {enis} AZ attachments")
    if interface:
        out.add("Interface endpoints: data processed", w.interface_endpoint_gb_per_day * DAYS,
                "privatelink.interface.data", f"assumes {w.interface_endpoint_gb_per_day:g} GB a day")


def _setting(plan, key: str):
    """A config value as the program used it: the stack file's, else the default the program read."""
    full = f"{plan.project}:{key}"
    if full in (plan.config or {}):
        return plan.config[full]
    spec = (getattr(plan, "keys_read", None) or {}).get(full)
    return None if spec is None else spec.default


def _sagemaker_rows(plan, out: _Rows) -> None:
    # The serving endpoint belongs to the deployment workflow (issue 10), not to Pulumi, so the plan has no
    # endpoint configuration for it: price the champion and challenger variants from the serving settings.
    itype = _setting(plan, "endpointInstanceType")
    if itype:
        count = _num(_setting(plan, "endpointInstanceCount"), 1.0)
        out.add(f"SageMaker endpoint: 2 variants x {count:g} x {itype}", 2 * count * HOURS,
                f"sagemaker.hosting.{itype}", "champion and challenger at endpointInstanceCount each, once the "
                "deployment workflow has created the endpoint; autoscaling above it costs more")
    # Endpoint configurations a program does record (none today) are priced as they are.
    for config in _of_type(plan, "aws:sagemaker/endpointConfiguration:EndpointConfiguration"):
        for variant in (config.inputs.get("productionVariants") or []) + (config.inputs.get("shadowProductionVariants") or []):
            name = variant.get("variantName") or "variant"
            if variant.get("serverlessConfig"):
                out.warnings.append(f"endpoint {config.name}/{name}: serverless, billed per request; not counted")
                continue
            count = _num(variant.get("initialInstanceCount"), 1.0)
            itype = variant.get("instanceType")
            if not itype:
                out.warnings.append(f"endpoint {config.name}/{name}: no instance type in the plan; not counted")
                continue
            out.add(f"SageMaker endpoint {config.name}/{name}: {count:g} x {itype}", count * HOURS,
                    f"sagemaker.hosting.{itype}", "initial instance count; autoscaling above it costs more")


def _kinesis_rows(plan, out: _Rows, w: Workload) -> None:
    for stream in _of_type(plan, "aws:kinesis/stream:Stream"):
        mode = _get(stream.inputs, "streamModeDetails", "streamMode", default="PROVISIONED")
        if mode == "ON_DEMAND":
            out.add(f"Kinesis stream {stream.name} (on-demand)", HOURS, "kinesis.ondemand.stream_hour")
            out.add(f"Kinesis stream {stream.name}: ingested", w.kinesis_gb_per_day * DAYS, "kinesis.ondemand.ingest",
                    f"assumes {w.kinesis_gb_per_day:g} GB a day")
            out.add(f"Kinesis stream {stream.name}: retrieved", w.kinesis_gb_per_day * DAYS,
                    "kinesis.ondemand.retrieval", "one consumer")
        else:
            shards = _num(stream.inputs.get("shardCount"), 1.0)
            out.add(f"Kinesis stream {stream.name}: {shards:g} shard(s)", shards * HOURS, "kinesis.provisioned.shard_hour")


# -- the image workload ------------------------------------------------------------------------------
def _ingest_function(plan):
    """(function, event source mapping) of the image ingestion: the SQS-driven function named *ingest*."""
    functions = _of_type(plan, "aws:lambda/function:Function")
    for mapping in _of_type(plan, "aws:lambda/eventSourceMapping:EventSourceMapping"):
        if ":sqs:" not in str(mapping.inputs.get("eventSourceArn", "")):
            continue
        target = str(mapping.inputs.get("functionName", ""))
        for fn in functions:
            name = fn.inputs.get("name") or fn.state.get("name") or fn.name
            if "ingest" in name and (target == name or target.endswith(f":function:{name}")):
                return fn, mapping
    return None, None


def _rule_with_prefix(plan, prefix: str) -> Optional[dict]:
    for lifecycle in _of_type(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        for rule in lifecycle.inputs.get("rules") or []:
            if _get(rule, "filter", "prefix") == prefix and rule.get("status") == "Enabled":
                return rule
    return None


_STORAGE_KEYS = {"STANDARD": "standard", "STANDARD_IA": "standard_ia", "GLACIER_IR": "glacier_ir",
                 "GLACIER": "glacier", "INTELLIGENT_TIERING": "intelligent_tiering"}


def _storage_rows(out: _Rows, label: str, gb_per_day: float, objects_per_day: float, rule: Optional[dict],
                  w: Workload) -> None:
    """Steady-state storage of data arriving at ``gb_per_day`` under a lifecycle rule: the data in a storage
    class is a day's volume times the days it stays there."""
    transitions = sorted(((_num(t.get("days")), t.get("storageClass")) for t in (rule or {}).get("transitions") or []),
                         key=lambda t: t[0])
    expiry = _num(_get(rule or {}, "expiration", "days"), 0.0) or None
    end = expiry if expiry is not None else w.retained_days_without_expiry
    stages = [(0.0, "STANDARD")] + transitions
    for i, (start, storage_class) in enumerate(stages):
        stop = min(stages[i + 1][0], end) if i + 1 < len(stages) else end
        if stop <= start:
            continue
        key = _STORAGE_KEYS.get(storage_class, storage_class.lower())
        kept = f"expires at day {expiry:g}" if expiry is not None else \
            f"no expiry: {w.retained_days_without_expiry:g} days counted"
        out.add(f"{label}: {storage_class} storage", gb_per_day * (stop - start), f"s3.{key}.storage",
                f"{gb_per_day:,.4g} GB a day, days {start:g}-{stop:g} ({kept})")
        if storage_class != "STANDARD":
            out.add(f"{label}: transitions to {storage_class}", objects_per_day * DAYS, f"s3.transition.{key}",
                    per=1000.0)
        if storage_class == "INTELLIGENT_TIERING":
            out.add(f"{label}: Intelligent-Tiering monitoring", objects_per_day * (stop - start),
                    "s3.intelligent_tiering.monitoring", per=1000.0)


def _workload_rows(plan, out: _Rows, w: Workload) -> None:
    fn, mapping = _ingest_function(plan)
    if fn is None:
        return
    images = w.images_per_day * DAYS
    batch = max(1.0, _num(mapping.inputs.get("batchSize"), 10.0))
    memory_gb = _num(fn.inputs.get("memorySize"), 128.0) / 1024.0
    arch = (fn.inputs.get("architectures") or ["x86_64"])[0]
    basis = f"{w.images_tb_per_day:g} TB/day of {w.mean_image_mb:g} MB images = {w.images_per_day:,.0f} images/day"
    out.add("S3: image uploads (PUT)", images, "s3.put", basis, per=1000.0)
    out.add("EventBridge: S3 Object Created events", images, "eventbridge.aws_events", "free for AWS service events")
    out.add("SQS: send, receive and delete", images * (1 + 2 / min(batch, 10.0)), "sqs.requests",
            "one send per image; receives and deletes in batches of up to 10", per=1_000_000.0)
    out.add("Lambda ingest: invocations", images / batch, "lambda.requests", f"batches of {batch:g}", per=1_000_000.0)
    out.add(f"Lambda ingest: duration ({arch}, {memory_gb * 1024:g} MB)", images * w.ingest_seconds_per_image * memory_gb,
            f"lambda.duration.{arch}", f"assumes {w.ingest_seconds_per_image:g} s per image")
    out.add("S3: raw image reads (GET)", images, "s3.get", per=1000.0)
    out.add("S3: shard writes (PUT)", images / batch, "s3.put", "one shard per batch", per=1000.0)
    raw_prefix = (plan.outputs or {}).get("raw_upload_prefix") or "incoming/"
    raw_gb_day = w.images_tb_per_day * 1000.0
    _storage_rows(out, "S3 raw images", raw_gb_day, w.images_per_day, _rule_with_prefix(plan, raw_prefix), w)
    shard_prefix = _get(fn.inputs, "environment", "variables", "SHARD_PREFIX", default="shards/")
    _storage_rows(out, "S3 shards", raw_gb_day * w.shard_bytes_ratio, w.images_per_day / batch,
                  _rule_with_prefix(plan, shard_prefix), w)
    out.add("DynamoDB catalog: writes", images * math.ceil(w.catalog_item_kb) + images / batch,
            "dynamodb.ondemand.write", "one PutItem per image, one statistics update per batch", per=1_000_000.0)
    out.add("DynamoDB catalog: reads", images * 0.5, "dynamodb.ondemand.read",
            "one eventually consistent BatchGetItem key per image", per=1_000_000.0)
    catalog_gb = w.images_per_day * w.catalog_item_kb * w.retained_days_without_expiry / 1_000_000.0
    out.add("DynamoDB catalog: storage", catalog_gb, "dynamodb.storage",
            f"{w.retained_days_without_expiry:g} days of items")
    out.add("DynamoDB catalog: point-in-time recovery", catalog_gb, "dynamodb.pitr")


# -- per-resource charges --------------------------------------------------------------------------
def _table_rows(plan, out: _Rows, w: Workload, has_catalog: bool) -> None:
    tables = [t for t in _of_type(plan, "aws:dynamodb/table:Table")
              if not (has_catalog and "catalog" in str(t.inputs.get("name", t.name)))]
    pitr = [t for t in tables if _get(t.inputs, "pointInTimeRecovery", "enabled") is True]
    out.add(f"DynamoDB: {len(tables)} table(s)" + (" besides the catalog" if has_catalog else "") + ", storage", len(tables) * w.other_table_gb, "dynamodb.storage",
            f"assumes {w.other_table_gb:g} GB each")
    out.add(f"DynamoDB: {len(pitr)} table(s) with point-in-time recovery", len(pitr) * w.other_table_gb, "dynamodb.pitr")


def _log_rows(plan, out: _Rows, w: Workload, instances: float) -> None:
    groups = _of_type(plan, "aws:cloudwatch/logGroup:LogGroup")
    if not groups:
        return
    retention = max(_num(g.inputs.get("retentionInDays"), 30.0) for g in groups)
    gb_day = instances * w.instance_log_gb_per_day
    if _of_type(plan, "aws:ec2/flowLog:FlowLog"):
        gb_day += w.flow_log_gb_per_day
    if _ingest_function(plan)[0] is not None:
        gb_day += w.images_per_day * w.log_bytes_per_image / 1e9
    out.add("CloudWatch Logs: ingested", gb_day * DAYS, "logs.ingest",
            f"{gb_day:.2f} GB a day from instances, flow logs and functions (assumptions in the workload)")
    out.add("CloudWatch Logs: stored", gb_day * retention, "logs.storage",
            f"{retention:g} days retained (the stack's longest; compressed storage is smaller)")


def _fixed_rows(plan, out: _Rows) -> None:
    keys = _of_type(plan, "aws:kms/key:Key")
    out.add("KMS customer managed keys", len(keys), "kms.key", "requests are few: S3 bucket keys, SQS data-key reuse")
    out.add("CloudWatch alarms", len(_of_type(plan, "aws:cloudwatch/metricAlarm:MetricAlarm")), "cloudwatch.alarm")


def estimate(plan, workload: Optional[Workload] = None) -> Estimate:
    """The monthly cost of ``plan`` (an offline/runner.py Plan) at its region's prices."""
    w = workload or Workload()
    region = (plan.config or {}).get("aws:region", "us-east-1")
    prices = Prices(region)
    out = _Rows(prices)
    instances = _fleet_rows(plan, out)
    _network_rows(plan, out, instances, w)
    _sagemaker_rows(plan, out)
    _kinesis_rows(plan, out, w)
    _workload_rows(plan, out, w)
    _table_rows(plan, out, w, has_catalog=_ingest_function(plan)[0] is not None)
    _log_rows(plan, out, w, instances)
    _fixed_rows(plan, out)
    return Estimate(plan.project, plan.stack, prices.region, out.rows, w, prices.dates(), out.warnings,
                    prices.unverified_used())


def render_table(estimate: Estimate) -> str:
    lines = [f"monthly cost of {estimate.project} / {estimate.stack} ({estimate.region}, USD, list prices dated "
             f"{estimate.price_dates[0]}" + (f" to {estimate.price_dates[1]}" if estimate.price_dates[1] != estimate.price_dates[0] else "")
             + ", offline/prices/)"]
    width = max([len(r.item) for r in estimate.rows] + [4])
    lines.append(f"  {'item':<{width}}  {'quantity':>14}  {'unit price':>12}  {'monthly':>11}  note")
    for r in estimate.rows:
        monthly = f"{r.monthly_usd:,.2f}" if r.in_total else f"({r.monthly_usd:,.2f})"
        lines.append(f"  {r.item:<{width}}  {r.quantity:>14,.2f}  {r.unit_price:>12.6g}  {monthly:>11}  "
                     f"per {r.unit}" + (f"; {r.note}" if r.note else ""))
    lines.append(f"  {'total':<{width}}  {'':>14}  {'':>12}  {estimate.total:>11,.2f}")
    lines.extend(f"  ! {w}" for w in estimate.warnings)
    if estimate.unverified_prices:
        lines.append(f"  ! {len(estimate.unverified_prices)} unit prices used here are unverified (typed from memory, "
                     f"see 'unverified' in offline/prices/{estimate.region}.json): "
                     + ", ".join(estimate.unverified_prices))
    return "\n".join(lines)


def estimates(plans: Iterable) -> list[Estimate]:
    return [estimate(p) for p in plans if not getattr(p, "error", None)]
