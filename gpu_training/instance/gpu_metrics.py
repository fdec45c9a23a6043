#!/usr/bin/env python3
"""Publish the GPU health metrics the CloudWatch agent cannot: a fleet heartbeat and GPU counts.

Every interval it runs nvidia-smi and sends to CloudWatch, in the stack's namespace:
  FleetInstanceHeartbeat = 1     {FleetName}, at most once per minute: Sum per minute = live instances
  HealthyGpuCount, GpuErrorCount {FleetName} and {FleetName, InstanceId}
nvidia-smi missing, failing, hanging or reporting no GPU counts as one error and zero healthy GPUs;
a GPU with unreadable utilization/memory or uncorrected ECC errors counts as an error. Per-GPU
utilization, memory, temperature and power come from the agent's nvidia_gpu plugin instead.
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time

from mlp_common import client, instance_id, parse_settings, require, setup_logging

QUERY_FIELDS = (
    "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,"
    "ecc.errors.uncorrected.volatile.total"
).split(",")
NVIDIA_SMI_TIMEOUT_S = 20
log = setup_logging("gpu-metrics")


def number(cell):
    """nvidia-smi cells with nounits; '[N/A]', '[Not Supported]', '[Unknown Error]' become None."""
    try:
        return float(cell)
    except ValueError:
        return None


def query_gpus():
    """Return (gpus, errors): one dict per GPU row, and what went wrong as text."""
    cmd = ["nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S)
    except FileNotFoundError:
        return [], ["nvidia-smi not found: no NVIDIA driver installed"]
    except subprocess.TimeoutExpired:
        return [], ["nvidia-smi timed out after %ss" % NVIDIA_SMI_TIMEOUT_S]
    except OSError as e:
        return [], ["nvidia-smi could not run: %s" % e]
    if out.returncode != 0:
        text = " ".join((out.stdout + out.stderr).split())[:500]
        return [], ["nvidia-smi exited %d: %s" % (out.returncode, text)]
    gpus, errors = [], []
    for line in out.stdout.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < len(QUERY_FIELDS):
            errors.append("unparsable nvidia-smi line: %r" % line.strip())
            continue
        tail = len(QUERY_FIELDS) - 3  # the name may hold commas; every other field cannot
        cells = cells[:2] + [",".join(cells[2:-tail])] + cells[-tail:]
        gpus.append(dict(zip(QUERY_FIELDS, cells)))
    if not gpus and not errors:
        errors.append("nvidia-smi reported no GPUs")
    return gpus, errors


def gpu_problem(gpu):
    for field in ("utilization.gpu", "memory.used", "memory.total"):
        if number(gpu[field]) is None:
            return "%s unreadable (%s)" % (field, gpu[field])
    ecc = number(gpu["ecc.errors.uncorrected.volatile.total"])  # [N/A] when ECC is off
    if ecc:
        return "%d uncorrected ECC errors" % ecc
    return None


def build_metric_data(gpus, errors, fleet, instance, now, heartbeat):
    bad_gpus = []
    for gpu in gpus:
        problem = gpu_problem(gpu)
        if problem:
            bad_gpus.append("GPU %s (%s, %s): %s" % (gpu["index"], gpu["name"], gpu["uuid"], problem))
    problems = errors + bad_gpus
    for problem in problems:
        log.error("GPU ERROR on %s: %s", instance, problem)
    healthy = len(gpus) - len(bad_gpus)
    fleet_dims = [{"Name": "FleetName", "Value": fleet}]
    both_dims = fleet_dims + [{"Name": "InstanceId", "Value": instance}]
    data = []
    for name, value in (("HealthyGpuCount", healthy), ("GpuErrorCount", len(problems))):
        for dims in (fleet_dims, both_dims):
            data.append({"MetricName": name, "Dimensions": dims, "Value": value, "Unit": "Count",
                         "Timestamp": now})  # fmt: skip
    if heartbeat:
        minute = now.replace(second=0, microsecond=0)  # one datapoint per instance per minute bucket
        data.append({"MetricName": "FleetInstanceHeartbeat", "Dimensions": fleet_dims, "Value": 1, "Unit": "Count",
                     "Timestamp": minute})  # fmt: skip
    log.info("%d GPU(s), %d healthy, %d error(s)", len(gpus), healthy, len(problems))
    return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", dest="METRICS_INTERVAL_S", help="seconds between samples")
    parser.add_argument("--once", action="store_true", help="one sample, then exit")
    parser.add_argument("--dry-run", action="store_true", help="print the MetricData JSON instead of sending it")
    args, s = parse_settings(parser, argv)
    require(s, "METRIC_NAMESPACE", "FLEET_NAME", *(() if args.dry_run else ("AWS_REGION",)))
    interval = int(s.get("METRICS_INTERVAL_S") or 60)
    instance = instance_id(s, log)
    cloudwatch = None if args.dry_run else client("cloudwatch", s)
    last_minute = None
    next_tick = time.monotonic()
    while True:
        now = datetime.datetime.now(datetime.timezone.utc)
        minute = now.replace(second=0, microsecond=0)
        gpus, errors = query_gpus()
        data = build_metric_data(gpus, errors, s["FLEET_NAME"], instance, now, minute != last_minute)
        last_minute = minute
        if args.dry_run:
            print(json.dumps({"Namespace": s["METRIC_NAMESPACE"], "MetricData": data}, default=str, indent=1))
        else:
            try:
                cloudwatch.put_metric_data(Namespace=s["METRIC_NAMESPACE"], MetricData=data)
            except Exception as e:  # keep sampling: a throttle or network blip must not kill the loop
                log.error("PutMetricData failed: %s", e)
                if args.once:
                    return 1
        if args.once:
            return 0
        next_tick = max(next_tick + interval, time.monotonic())  # fixed rate, no catch-up burst
        time.sleep(max(0.0, next_tick - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
