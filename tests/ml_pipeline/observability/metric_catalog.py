"""What metrics exist: AWS's documented ones (tests/data/aws_metrics.json, a source URL per namespace)
and the project's own (ml_pipeline/metric_names.py; gpu-training's agent measurements and the names its
instance scripts publish). ``problems`` names every (namespace, metric, dimensions) that is neither."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from gpu_training import user_data
from ml_pipeline import metric_names

REPO = Path(__file__).resolve().parents[3]
TABLE = REPO / "tests" / "data" / "aws_metrics.json"
INSTANCE_DIR = REPO / "gpu_training" / "instance"
PIPELINE_NAMESPACE = re.compile(r"MLPlatform/ml-pipeline-[a-z0-9-]+$")
GPU_NAMESPACE = re.compile(r"MLPlatform/gpu-training-[a-z0-9-]+$")

Named = tuple[str, str, tuple[str, ...]]


@lru_cache(maxsize=1)
def aws_table() -> dict:
    return {ns: v for ns, v in json.loads(TABLE.read_text()).items() if not ns.startswith("_")}


def _instance_module(name: str):
    if str(INSTANCE_DIR) not in sys.path:
        sys.path.insert(0, str(INSTANCE_DIR))  # the scripts import mlp_common from beside them
    spec = importlib.util.spec_from_file_location(f"obs_instance_{name}", INSTANCE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def gpu_published() -> dict[str, set[tuple[str, ...]]]:
    """gpu-training's names: the agent's nvidia_smi_* per GPU measurement (the fleet roll-up with no
    dimensions, the instance roll-up by InstanceId); what gpu_metrics.py builds for one sample (run);
    and the metrics spot_watcher.py sends (its ``metric=`` names, dimension FleetName)."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for m in user_data.GPU_MEASUREMENTS:
        found[f"nvidia_smi_{m}"] = {(), tuple(user_data.INSTANCE_AGGREGATE_DIMENSION_NAMES)}
    gpu = {"index": "0", "uuid": "GPU-1", "name": "Tesla V100", "utilization.gpu": "50", "memory.used": "1",
           "memory.total": "16", "temperature.gpu": "40", "power.draw": "100", "ecc.errors.uncorrected.volatile.total": "0"}
    now = dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc)
    for datum in _instance_module("gpu_metrics").build_metric_data([gpu], [], "fleet", "i-1", now, True):
        found.setdefault(datum["MetricName"], set()).add(tuple(d["Name"] for d in datum["Dimensions"]))
    for name in re.findall(r'metric="(\w+)"', (INSTANCE_DIR / "spot_watcher.py").read_text()):
        found.setdefault(name, set()).add(("FleetName",))
    return found


def problems(named: Iterable[Named]) -> list[str]:
    out = []
    for namespace, name, dims in named:
        if namespace in aws_table():
            entry = aws_table()[namespace]
            if name not in entry["metrics"]:
                out.append(f"{namespace} {name}: not among the metrics documented at {entry['source']}")
            elif sorted(dims) not in [sorted(d) for d in entry["dimensions"]]:
                out.append(f"{namespace} {name}: dimensions {list(dims)} are not a documented set")
        elif PIPELINE_NAMESPACE.match(namespace):
            if name not in metric_names.PUBLISHED:
                out.append(f"{namespace} {name}: not in ml_pipeline/metric_names.py")
            elif sorted(dims) != sorted(metric_names.DIMENSIONS[name]):
                out.append(f"{namespace} {name}: dimensions {list(dims)} but it is published with "
                           f"{list(metric_names.DIMENSIONS[name])}")
        elif GPU_NAMESPACE.match(namespace):
            if name not in gpu_published():
                out.append(f"{namespace} {name}: neither an agent measurement nor published by an instance script")
            elif tuple(dims) not in gpu_published()[name]:
                out.append(f"{namespace} {name}: dimensions {list(dims)} are not what it is published with")
        else:
            out.append(f"{namespace} {name}: unknown namespace")
    return out


def alarm_metrics(inputs: dict) -> list[Named]:
    """(namespace, metric, dimension names) of a recorded MetricAlarm's inputs."""
    found = []
    if inputs.get("metricName"):
        found.append((inputs["namespace"], inputs["metricName"], tuple(inputs.get("dimensions") or {})))
    for q in inputs.get("metricQueries") or []:
        if q.get("metric"):
            m = q["metric"]
            found.append((m["namespace"], m["metricName"], tuple(m.get("dimensions") or {})))
    return found


SEARCH = re.compile(r"SEARCH\('\{([^,}]+)((?:,[^}]*)?)\} MetricName=\"([^\"]+)\"")


def dashboard_metrics(body: dict) -> list[Named]:
    """Every metric a dashboard body reads: metric entries and SEARCH expressions."""
    found = []
    for widget in body["widgets"]:
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], dict):
                match = SEARCH.search(entry[0].get("expression", ""))
                if match:
                    dims = tuple(d for d in match.group(2).split(",") if d)
                    found.append((match.group(1), match.group(3), dims))
                continue
            fields = [e for e in entry if not isinstance(e, dict)]
            found.append((fields[0], fields[1], tuple(fields[2::2])))
    return found
