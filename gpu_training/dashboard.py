"""The gpu-training dashboard: fleet and per-instance GPU utilization, memory and temperature, live
instances against the target, GPU health, Spot interruption notices and rebalance recommendations.

``gpu_dashboard`` returns the body as plain data (tested as data); ``GpuDashboard`` is the resource.
Per-instance series come from SEARCH expressions over the agent's InstanceId roll-up, so instances the
fleet replaces appear and disappear without a change to the dashboard.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from gpu_training.metrics import (GPU_ERROR_COUNT_METRIC, GPU_MEASUREMENTS, HEALTHY_GPU_COUNT_METRIC,
                                  HEARTBEAT_METRIC, HEARTBEAT_PERIOD_S, INSTANCE_AGGREGATE_DIMENSION_NAMES,
                                  SPOT_INTERRUPTION_METRIC, SPOT_REBALANCE_METRIC, fleet_dimensions)

GRID_WIDTH = 24


def agent_metric(measurement: str) -> str:
    """The CloudWatch agent publishes its nvidia_gpu measurements as nvidia_smi_<name>."""
    if measurement not in GPU_MEASUREMENTS:
        raise ValueError(f"{measurement!r} is not collected (gpu_training.user_data.GPU_MEASUREMENTS)")
    return f"nvidia_smi_{measurement}"


@dataclass(frozen=True)
class GpuDashboardNames:
    region: str
    namespace: str
    fleet_name: str
    target_capacity: int
    metrics_interval_s: int


def _graph(title: str, metrics: list, region: str, stat: str, period: int, *, annotations: Optional[list] = None,
           y_max: Optional[float] = None, width: int = 12) -> dict:
    props = {"title": title, "region": region, "metrics": metrics, "stat": stat, "period": period,
             "view": "timeSeries", "stacked": False, "yAxis": {"left": {"min": 0}}}
    if y_max is not None:
        props["yAxis"]["left"]["max"] = y_max
    if annotations:
        props["annotations"] = {"horizontal": annotations}
    return {"type": "metric", "width": width, "height": 6, "properties": props}


def _per_instance(n: GpuDashboardNames, measurement: str, stat: str, expr_id: str) -> list:
    dims = ",".join(INSTANCE_AGGREGATE_DIMENSION_NAMES)
    search = (f"SEARCH('{{{n.namespace},{dims}}} MetricName=\"{agent_metric(measurement)}\"', "
              f"'{stat}', {max(60, n.metrics_interval_s)})")
    return [{"expression": search, "id": expr_id}]  # one line per instance, labelled by CloudWatch


def gpu_dashboard(n: GpuDashboardNames) -> dict:
    r, ns = n.region, n.namespace
    fleet = fleet_dimensions(n.fleet_name)
    period = max(60, n.metrics_interval_s)
    heartbeats_per_period = HEARTBEAT_PERIOD_S / period
    fleet_series = lambda m, stat, label: [ns, agent_metric(m), {"stat": stat, "label": label}]  # noqa: E731
    widgets = [
        {"type": "text", "width": GRID_WIDTH, "height": 2, "properties": {"markdown":
            f"## GPU fleet {n.fleet_name}\nFleet series have no dimensions (every GPU of the fleet); per-instance "
            f"series are the agent's {', '.join(INSTANCE_AGGREGATE_DIMENSION_NAMES)} roll-up."}},
        _graph("Fleet GPU utilization (%)", [fleet_series("utilization_gpu", "Average", "average"),
                                             fleet_series("utilization_gpu", "Minimum", "lowest GPU")],
               r, "Average", period, y_max=100),
        _graph("GPU utilization per instance (%)",
               [_per_instance(n, "utilization_gpu", "Average", "util")], r, "Average", period, y_max=100),
        _graph("Fleet GPU memory", [
            fleet_series("memory_used", "Sum", "used (MiB, fleet)"),
            fleet_series("memory_total", "Sum", "total (MiB, fleet)"),
            fleet_series("utilization_memory", "Average", "memory busy (%)"),
        ], r, "Sum", period),
        _graph("GPU memory used per instance (MiB)",
               [_per_instance(n, "memory_used", "Average", "mem")], r, "Average", period),
        _graph("GPU temperature (°C)", [fleet_series("temperature_gpu", "Maximum", "hottest GPU"),
                                        fleet_series("temperature_gpu", "Average", "average")],
               r, "Maximum", period, annotations=[{"label": "throttling risk", "value": 85}]),
        _graph("GPU temperature per instance (°C, hottest GPU)",
               [_per_instance(n, "temperature_gpu", "Maximum", "temp")], r, "Maximum", period),
        _graph("Live instances against the target", [
            [ns, HEARTBEAT_METRIC, *[x for kv in fleet.items() for x in kv], {"id": "beats", "visible": False,
                                                                              "stat": "Sum"}],
            [{"expression": f"beats / {heartbeats_per_period:g}", "label": "live instances", "id": "live"}],
        ], r, "Sum", HEARTBEAT_PERIOD_S, annotations=[{"label": "target capacity", "value": n.target_capacity}]),
        _graph("GPU health", [
            [ns, HEALTHY_GPU_COUNT_METRIC, *[x for kv in fleet.items() for x in kv], {"stat": "Average",
                                                                                     "label": "healthy GPUs"}],
            [ns, GPU_ERROR_COUNT_METRIC, *[x for kv in fleet.items() for x in kv], {"stat": "Maximum",
                                                                                   "label": "GPU errors"}],
        ], r, "Average", period),
        _graph("Spot interruptions and rebalance recommendations", [
            [ns, SPOT_INTERRUPTION_METRIC, *[x for kv in fleet.items() for x in kv], {"label": "interruption notices"}],
            [ns, SPOT_REBALANCE_METRIC, *[x for kv in fleet.items() for x in kv], {"label": "rebalance recommendations"}],
        ], r, "Sum", 300, width=GRID_WIDTH),
    ]
    placed, x, y, row = [], 0, 0, 0
    for widget in widgets:
        if x + widget["width"] > GRID_WIDTH:
            x, y, row = 0, y + row, 0
        placed.append({**widget, "x": x, "y": y})
        x, row = x + widget["width"], max(row, widget["height"])
    return {"widgets": placed}


@dataclass(frozen=True)
class GpuDashboardArgs:
    fleet_name: str
    namespace: str
    target_capacity: int
    metrics_interval_s: int
    region: pulumi.Input[str]


class GpuDashboard(pulumi.ComponentResource):
    """One CloudWatch dashboard named after the fleet."""

    def __init__(self, name: str, args: GpuDashboardArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:monitoring:GpuDashboard", name, None, opts)
        body = pulumi.Output.from_input(args.region).apply(lambda region: json.dumps(gpu_dashboard(GpuDashboardNames(
            region=region, namespace=args.namespace, fleet_name=args.fleet_name,
            target_capacity=args.target_capacity, metrics_interval_s=args.metrics_interval_s)), separators=(",", ":")))
        self.dashboard = aws.cloudwatch.Dashboard(name, dashboard_name=args.fleet_name, dashboard_body=body,
                                                  opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"dashboard_name": self.dashboard.dashboard_name})
