#!/usr/bin/env python3
"""Watch IMDSv2 for a Spot interruption notice; on one, save and upload checkpoints, then exit 0.

A rebalance recommendation (meta-data/events/recommendations/rebalance) comes first when EC2 sees
elevated risk: the fleet (launch-before-terminate) then starts a replacement and terminates this
instance after its delay, with no interruption notice. On one the watcher checkpoints at once,
publishes SpotRebalanceRecommendations and keeps watching.

Polls /latest/meta-data/spot/instance-action every few seconds (404 = no notice). On a notice it
logs it, publishes SpotInterruptionNotices=1 {FleetName}, runs the checkpoint hook (bounded well
inside the two-minute warning; a failing hook is logged and the sync still runs), and uploads the
new or changed files of the checkpoint directory to s3://<bucket>/checkpoints/<fleet>/<instance>/.

Whenever it is stopped (SIGTERM from systemd at shutdown) it runs the hook and syncs once more: a
fleet that terminates an instance itself (scale-in, replacement, stack destroy, rebalancing) gives
no Spot notice, so shutdown is the last chance. The unit's TimeoutStopSec leaves time for both.
Exits 0 when the last sync succeeded, 1 when some upload failed (systemd then restarts it, and only
the files still missing are sent).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading

from mlp_common import IMDS_ENDPOINT, Imds, client, instance_id, parse_settings, require, setup_logging

log = setup_logging("spot-watcher")
HOOK_FILE = "/etc/mlplatform/checkpoint-hook.sh"
STATE_DIR = "/var/lib/mlplatform"


def run_hook(hook, timeout_s, env):
    if not hook or not os.path.isfile(hook):
        log.info("no checkpoint hook configured")
        return True
    log.info("running checkpoint hook %s (timeout %ss)", hook, timeout_s)
    try:
        rc = subprocess.run(["bash", hook], env=env, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        log.error("CHECKPOINT HOOK TIMED OUT after %ss; syncing what is on disk", timeout_s)
        return False
    if rc != 0:
        log.error("CHECKPOINT HOOK FAILED with exit code %d; syncing what is on disk", rc)
    return rc == 0


def sync_checkpoints(s3, local_dir, bucket, prefix, state_file):
    """Upload files new or changed since the last sync (size, mtime); return the number of failures."""
    try:
        with open(state_file) as f:
            synced = json.load(f)
    except (OSError, ValueError):
        synced = {}
    todo = []
    for root, _dirs, files in os.walk(local_dir):
        for name in files:
            path = os.path.join(root, name)
            key = prefix + os.path.relpath(path, local_dir).replace(os.sep, "/")
            st = os.stat(path)
            stamp = [st.st_size, st.st_mtime_ns]
            if synced.get(bucket + "/" + key) != stamp:
                todo.append((path, key, stamp))
    log.info("uploading %d new or changed file(s) to s3://%s/%s", len(todo), bucket, prefix)

    def upload(item):
        path, key, stamp = item
        s3.upload_file(path, bucket, key)  # the bucket's default SSE-KMS encryption applies
        return item

    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(upload, item) for item in todo]
        for future in concurrent.futures.as_completed(futures):
            try:
                _path, key, stamp = future.result()
                synced[bucket + "/" + key] = stamp
            except Exception as e:
                failures += 1
                log.error("UPLOAD FAILED: %s", e)
    os.makedirs(os.path.dirname(state_file), exist_ok=True)
    with open(state_file, "w") as f:
        json.dump(synced, f)
    return failures


def run_configured_hook(s, action):
    env = dict(os.environ, SPOT_INSTANCE_ACTION=action, CHECKPOINT_DIR=s["CHECKPOINT_DIR"])
    return run_hook(s.get("CHECKPOINT_HOOK", HOOK_FILE), float(s.get("CHECKPOINT_HOOK_TIMEOUT_S") or 60), env)


def handle_notice(notice, s, instance, metric="SpotInterruptionNotices"):
    log.warning("%s for %s: %s", "SPOT INTERRUPTION NOTICE" if metric == "SpotInterruptionNotices"
                else "SPOT REBALANCE RECOMMENDATION", instance, notice)
    fleet = s["FLEET_NAME"]
    try:
        datum = {"MetricName": metric, "Value": 1, "Unit": "Count",
                 "Dimensions": [{"Name": "FleetName", "Value": fleet}]}  # fmt: skip
        client("cloudwatch", s).put_metric_data(Namespace=s["METRIC_NAMESPACE"], MetricData=[datum])
    except Exception as e:  # the checkpoint matters more than the metric
        log.error("PutMetricData failed: %s", e)
    run_configured_hook(s, notice)
    return sync(s, instance)


def sync(s, instance):
    fleet = s["FLEET_NAME"]
    prefix = "checkpoints/%s/%s/" % (fleet, instance)
    state_file = os.path.join(s.get("MLP_STATE_DIR") or STATE_DIR, "checkpoint-sync.json")
    if not os.path.isdir(s["CHECKPOINT_DIR"]):
        log.error("checkpoint directory %s does not exist; nothing to upload", s["CHECKPOINT_DIR"])
        return 0
    failures = sync_checkpoints(client("s3", s), s["CHECKPOINT_DIR"], s["ARTIFACTS_BUCKET"], prefix, state_file)
    if failures:
        log.error("CHECKPOINT SYNC INCOMPLETE: %d upload(s) failed", failures)
        return 1
    log.info("checkpoints synced to s3://%s/%s", s["ARTIFACTS_BUCKET"], prefix)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", dest="ARTIFACTS_BUCKET")
    parser.add_argument("--checkpoint-dir", dest="CHECKPOINT_DIR")
    parser.add_argument("--hook", dest="CHECKPOINT_HOOK", help="shell script run before the sync")
    parser.add_argument("--hook-timeout", dest="CHECKPOINT_HOOK_TIMEOUT_S")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--once", action="store_true", help="poll once, handle a notice if any, exit")
    args, s = parse_settings(parser, argv)
    require(s, "AWS_REGION", "METRIC_NAMESPACE", "FLEET_NAME", "ARTIFACTS_BUCKET", "CHECKPOINT_DIR")
    imds = Imds(s.get("IMDS_ENDPOINT") or IMDS_ENDPOINT, ttl_s=int(s.get("IMDS_TOKEN_TTL_S") or 21600))
    instance = instance_id(s, log)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())  # systemd stop: leave the loop, final sync
    log.info("watching for Spot interruption notices on %s", instance)

    def poll(path):
        try:
            return imds.get(path)
        except Exception as e:  # IMDS blips must not stop the watch
            log.warning("IMDS poll failed: %s", e)
            return None

    rebalanced = False
    try:
        while not stop.is_set():
            notice = poll("meta-data/spot/instance-action")
            if notice:
                return handle_notice(notice, s, instance)
            if not rebalanced:
                recommendation = poll("meta-data/events/recommendations/rebalance")
                if recommendation:
                    rebalanced = True  # once: the recommendation stays until the instance goes
                    handle_notice(recommendation, s, instance, metric="SpotRebalanceRecommendations")
            if args.once:
                break
            stop.wait(args.poll_interval)
        if stop.is_set():
            # Shutdown: the fleet may be terminating this instance (scale-in, replacement after a
            # rebalance recommendation, stack destroy) without any Spot notice.
            log.warning("stopping%s: running the checkpoint hook and a final sync",
                        " after a rebalance recommendation" if rebalanced else "")
            run_configured_hook(s, json.dumps({"action": "stop"}))
            return sync(s, instance)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
