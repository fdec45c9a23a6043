"""The metrics the fleet publishes and the alarms read: names, dimensions and the collection interval.

One module for both sides (issue 7): ``user_data.py`` renders the CloudWatch agent configuration from
it, ``monitoring.py`` builds the alarms from it, and the instance scripts (``instance/gpu_metrics.py``,
``instance/spot_watcher.py``) publish these names (tests check them against this module).
Pure Python, no pulumi import.
"""
from __future__ import annotations

from typing import Optional

# GPU measurements of the agent's nvidia_gpu plugin that we collect (all registered by the agent,
# which publishes each as nvidia_smi_<name>).
GPU_MEASUREMENTS = (
    "utilization_gpu",
    "utilization_memory",
    "memory_used",
    "memory_total",
    "temperature_gpu",
    "power_draw",
)

# The [] entry of the agent's aggregation_dimensions makes every agent also publish each metric with
# no dimensions at all; CloudWatch merges those datapoints from all instances, so Average over a
# period is the mean over every GPU of the fleet, whatever instances come and go. (The per-GPU series
# carry index, name, InstanceId and InstanceType: no alarm can use them.)
FLEET_GPU_UTILIZATION_METRIC = "nvidia_smi_utilization_gpu"
FLEET_AGGREGATE_DIMENSIONS: dict[str, str] = {}
# Per-instance roll-up of the agent's metrics (all GPUs of one instance): dimension InstanceId only.
INSTANCE_AGGREGATE_DIMENSION_NAMES = ("InstanceId",)

# Published by gpu_metrics.py with dimensions fleet_dimensions() (and {FleetName, InstanceId} for the
# two GPU counts). Heartbeat: at most one datapoint per instance per minute, so its Sum over a period
# counts the live instances.
HEARTBEAT_METRIC = "FleetInstanceHeartbeat"
HEALTHY_GPU_COUNT_METRIC = "HealthyGpuCount"
GPU_ERROR_COUNT_METRIC = "GpuErrorCount"
# Published by spot_watcher.py with dimensions fleet_dimensions().
SPOT_INTERRUPTION_METRIC = "SpotInterruptionNotices"
SPOT_REBALANCE_METRIC = "SpotRebalanceRecommendations"

# The capacity alarm sums heartbeats over this period; every allowed interval divides it, so each
# period holds the same number of heartbeats per instance (120 s would give 2 or 3 and false alarms).
HEARTBEAT_PERIOD_S = 300
METRICS_INTERVALS_S = (10, 30, 60, 300)  # 10 and 30: high-resolution metrics, which alarms support


def fleet_dimensions(fleet_name: str) -> dict[str, str]:
    """Dimensions of the heartbeat, GPU-count and Spot metrics for alarms."""
    return {"FleetName": fleet_name}


def check_metrics_interval(value: object) -> Optional[str]:
    """The one check of the collection interval (config load and UserDataParams both call it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in METRICS_INTERVALS_S:
        return f"{value!r} is not one of {', '.join(map(str, METRICS_INTERVALS_S))} seconds"
    return None


def heartbeats_per_period(interval_s: int) -> float:
    """Heartbeats one live instance sends per HEARTBEAT_PERIOD_S (the collector sends at most one a minute)."""
    return HEARTBEAT_PERIOD_S / max(60, interval_s)
