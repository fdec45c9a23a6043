#!/usr/bin/env python3
"""Start, supervise and stop one distributed training run on this fleet instance.

The stack's SSM Command documents call it (through /usr/local/bin/mlplatform-training-run) on every
instance a run targets; nothing else on the instance accepts commands from SSM.

  start      validate the parameters again (SSM's allowedPattern checked them first), download the
             training script from the artifacts bucket, record the run in the experiments table
             (the instance that hosts the rendezvous only), and start `supervise` as a transient
             systemd unit, mlplatform-train-<run id>, so the SSM command returns at once.
  supervise  run torchrun (c10d rendezvous on the first instance, one process per GPU) with the
             run's settings in its environment and its output in /var/log/training/<run id>.log
             (shipped to the training log group); then record SUCCEEDED, FAILED or STOPPED.
  stop       stop the run's unit (systemd sends SIGTERM; supervise passes it on to torchrun).

Stdlib only (boto3 imported lazily), Python 3.8+.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys

from mlp_common import IMDS_ENDPOINT, Imds, client, instance_id, parse_settings, require, setup_logging

log = setup_logging("training-run")
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SCRIPT_KEY = re.compile(r"^scripts/([A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.py$")
IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$")
HPARAMS_SUFFIX = re.compile(r"^(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")
MAX_NODES = 100
RENDEZVOUS_PORT = 29400
RUN_DIR = "/var/lib/mlplatform/runs"
LOG_DIR = "/var/log/training"
UNIT_PREFIX = "mlplatform-train-"
TORCHRUN_CANDIDATES = ("/opt/pytorch/bin/torchrun", "/opt/conda/bin/torchrun")  # PyTorch DLAMI layouts


_clients = {}


def aws(service, s):
    """One client per service for the life of the process."""
    if service not in _clients:
        _clients[service] = client(service, s)
    return _clients[service]


class RunError(Exception):
    """A parameter or precondition is wrong: reported on stderr (the SSM command's output), exit 2."""


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate(args, s):
    checks = (("--run-id", args.run_id, RUN_ID), ("--experiment-id", args.experiment_id, EXPERIMENT_ID),
              ("--script-key", args.script_key, SCRIPT_KEY), ("--rendezvous-host", args.rendezvous_host, IPV4))
    for flag, value, pattern in checks:
        if not value or not pattern.match(value):
            raise RunError("%s %r does not match %s" % (flag, value, pattern.pattern))
    if not 1 <= args.nodes <= MAX_NODES:
        raise RunError("--nodes must be 1 to %d, got %d" % (MAX_NODES, args.nodes))
    stack_prefix = s["HPARAMS_PREFIX"]
    prefix = args.hparams_prefix or stack_prefix
    if not (prefix.startswith(stack_prefix) and HPARAMS_SUFFIX.match(prefix[len(stack_prefix):])):
        raise RunError("--hparams-prefix %r is not under this stack's %s" % (prefix, stack_prefix))
    return prefix


def local_ipv4(s):
    return s.get("LOCAL_IPV4") or Imds(s.get("IMDS_ENDPOINT") or IMDS_ENDPOINT).get("meta-data/local-ipv4")


def download_script(s, key, run_dir):
    from botocore.exceptions import ClientError

    os.makedirs(run_dir, exist_ok=True)
    target = os.path.join(run_dir, os.path.basename(key))
    try:
        body = aws("s3", s).get_object(Bucket=s["ARTIFACTS_BUCKET"], Key=key)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "InvalidObjectState":
            raise RunError("s3://%s/%s is archived (glacierStorageClass flexible or deep-archive): restore it "
                           "first with aws s3api restore-object, or upload the script again"
                           % (s["ARTIFACTS_BUCKET"], key)) from None
        raise RunError("cannot download s3://%s/%s: %s" % (s["ARTIFACTS_BUCKET"], key, e)) from None
    with open(target, "wb") as f:
        f.write(body)
    return target


def record_start(s, args, hparams_prefix, instance):
    from botocore.exceptions import ClientError

    item = {
        "experiment_id": {"S": args.experiment_id}, "run_id": {"S": args.run_id},
        "status": {"S": "RUNNING"}, "started_at": {"S": now_iso()},
        "nodes": {"N": str(args.nodes)}, "rendezvous_host": {"S": args.rendezvous_host},
        "script": {"S": "s3://%s/%s" % (s["ARTIFACTS_BUCKET"], args.script_key)},
        "hparams_prefix": {"S": hparams_prefix}, "fleet_name": {"S": s["FLEET_NAME"]},
        "leader_instance_id": {"S": instance},
        "log_stream": {"S": "%s (log group %s, file %s.log)" % (instance, s.get("TRAINING_LOG_GROUP", ""), args.run_id)},
    }  # fmt: skip
    try:
        aws("dynamodb", s).put_item(TableName=s["EXPERIMENTS_TABLE"], Item=item,
                                       ConditionExpression="attribute_not_exists(run_id)")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise RunError("run %s of experiment %s already exists: pick a new --run-id"
                           % (args.run_id, args.experiment_id)) from None
        raise


def record_end(s, args, status, exit_code):
    aws("dynamodb", s).update_item(
        TableName=s["EXPERIMENTS_TABLE"],
        Key={"experiment_id": {"S": args.experiment_id}, "run_id": {"S": args.run_id}},
        UpdateExpression="SET #s = :s, ended_at = :e, exit_code = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}, ":e": {"S": now_iso()}, ":c": {"N": str(exit_code)}},
    )


def run_args(args, hparams_prefix):
    return ["--run-id", args.run_id, "--experiment-id", args.experiment_id, "--script-key", args.script_key,
            "--nodes", str(args.nodes), "--rendezvous-host", args.rendezvous_host, "--hparams-prefix", hparams_prefix]


def start(args, s):
    hparams_prefix = validate(args, s)
    instance = instance_id(s, log)
    leader = local_ipv4(s) == args.rendezvous_host
    run_dir = os.path.join(s.get("MLP_RUN_DIR") or RUN_DIR, args.run_id)
    script = download_script(s, args.script_key, run_dir)
    log.info("run %s: script %s, %d node(s), rendezvous %s%s", args.run_id, script, args.nodes,
             args.rendezvous_host, " (this instance)" if leader else "")
    if leader:
        record_start(s, args, hparams_prefix, instance)
    unit = UNIT_PREFIX + args.run_id
    cmd = [s.get("SYSTEMD_RUN") or "systemd-run", "--unit", unit, "--collect",
           "--property", "EnvironmentFile=/etc/mlplatform/env", "--property", "KillMode=mixed",
           "--property", "TimeoutStopSec=120",
           # Stopped before the watcher at shutdown (stop order is the reverse of After=): the trainer
           # gets SIGTERM and can save, then the watcher's final sync uploads what it saved.
           "--property", "After=mlplatform-spot-watcher.service",
           s.get("MLP_RUN_COMMAND") or "/usr/local/bin/mlplatform-training-run", "supervise",
           *run_args(args, hparams_prefix), *(["--leader"] if leader else [])]
    subprocess.run(cmd, check=True)
    print("started %s on %s; follow: journalctl -u %s, or the training log group, stream %s"
          % (unit, instance, unit, instance))
    return 0


def torchrun(s):
    found = s.get("TORCHRUN") or shutil.which("torchrun")
    found = found or next((c for c in TORCHRUN_CANDIDATES if os.access(c, os.X_OK)), None)
    if not found:
        raise RunError("torchrun not found: use an AMI with PyTorch (see README: amiParameter) or set TORCHRUN")
    return found


def supervise(args, s):
    hparams_prefix = validate(args, s)
    run_dir = os.path.join(s.get("MLP_RUN_DIR") or RUN_DIR, args.run_id)
    script = os.path.join(run_dir, os.path.basename(args.script_key))
    log_dir = s.get("MLP_LOG_DIR") or LOG_DIR
    os.makedirs(log_dir, exist_ok=True)
    cmd = [torchrun(s), "--nnodes", str(args.nodes), "--nproc-per-node", "gpu",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", "%s:%d" % (args.rendezvous_host, RENDEZVOUS_PORT),
           "--rdzv-id", args.run_id, "--max-restarts", "3", script]
    env = dict(os.environ, RUN_ID=args.run_id, EXPERIMENT_ID=args.experiment_id, HPARAMS_PREFIX=hparams_prefix,
               CHECKPOINT_DIR=s["CHECKPOINT_DIR"], ARTIFACTS_BUCKET=s["ARTIFACTS_BUCKET"])
    stopped = []
    with open(os.path.join(log_dir, args.run_id + ".log"), "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=run_dir)

        def forward(signum, _frame):
            stopped.append(signum)
            proc.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            rc = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
    status = "STOPPED" if stopped else ("SUCCEEDED" if rc == 0 else "FAILED")
    log.info("run %s: torchrun exited %d: %s", args.run_id, rc, status)
    if args.leader:
        record_end(s, args, status, rc)
    return 0 if status != "FAILED" else 1


def stop(args, s):
    if not args.run_id or not RUN_ID.match(args.run_id):
        raise RunError("--run-id %r does not match %s" % (args.run_id, RUN_ID.pattern))
    unit = UNIT_PREFIX + args.run_id
    rc = subprocess.run([s.get("SYSTEMCTL") or "systemctl", "stop", unit]).returncode
    print("stopped %s" % unit if rc == 0 else "%s was not running" % unit)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "supervise", "stop"))
    parser.add_argument("--run-id")
    parser.add_argument("--experiment-id")
    parser.add_argument("--script-key")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--rendezvous-host")
    parser.add_argument("--hparams-prefix")
    parser.add_argument("--leader", action="store_true", help="(supervise) this instance records the result")
    args, s = parse_settings(parser, argv)
    try:
        if args.action == "stop":
            return stop(args, s)
        require(s, "AWS_REGION", "FLEET_NAME", "ARTIFACTS_BUCKET", "EXPERIMENTS_TABLE", "HPARAMS_PREFIX",
                "CHECKPOINT_DIR")
        return start(args, s) if args.action == "start" else supervise(args, s)
    except RunError as e:
        log.error("%s", e)
        print("ERROR: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
