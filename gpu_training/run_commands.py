"""SSM Command documents that start and stop a distributed training run on the fleet, and the only
SendCommand grant the instances get.

The documents take fixed, validated parameters (run id, experiment id, the training script's key in
the artifacts bucket, node count, the rendezvous host, a hyperparameter prefix under the stack's) and
run one fixed program on the instance, ``mlplatform-training-run`` (gpu_training/instance/
training_run.py), which checks them again. So whoever may send them can start or stop training runs
on this fleet, and nothing else: no shell of their choosing, on no other instance.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from gpu_training.instance_role import FLEET_TAG_KEY
from shared import iam
from shared.context import AwsContext

RUN_PROGRAM = "/usr/local/bin/mlplatform-training-run"  # written by the user_data
START_TIMEOUT_S = 600  # download the script, record the run, start the unit: the run itself is a unit

# SSM checks allowedPattern before the command reaches an instance; training_run.py checks the same
# patterns again (a test keeps the two equal). No pattern admits a quote, space or $.
RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
EXPERIMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
SCRIPT_KEY_PATTERN = r"^scripts/([A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.py$"
NODES_PATTERN = r"^([1-9]|[1-9][0-9]|100)$"
IPV4_PATTERN = (r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
                r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$")


def hparams_prefix_pattern(stack_prefix: str) -> str:
    return "^" + re.escape(stack_prefix) + r"(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$"


def _parameter(description: str, pattern: str, default: Optional[str] = None) -> dict:
    parameter = {"type": "String", "description": description, "allowedPattern": pattern}
    if default is not None:
        parameter["default"] = default
    return parameter


def start_document(hparams_prefix: str) -> dict:
    """The start document's content (schema 2.2). Send it to every instance of the run at once."""
    flags = " ".join(f"--{flag} '{{{{ {param} }}}}'" for flag, param in (
        ("run-id", "runId"), ("experiment-id", "experimentId"), ("script-key", "scriptKey"), ("nodes", "nodes"),
        ("rendezvous-host", "rendezvousHost"), ("hparams-prefix", "hparamsPrefix")))
    return {
        "schemaVersion": "2.2",
        "description": "Start a distributed training run (torchrun, one process per GPU) on the targeted fleet "
                       "instances; the first instance's private IP hosts the rendezvous.",
        "parameters": {
            "runId": _parameter("Run id: lower-case letters, digits, -; at most 63", RUN_ID_PATTERN),
            "experimentId": _parameter("Experiment id (the experiments table's partition key)", EXPERIMENT_ID_PATTERN),
            "scriptKey": _parameter("Training script in the artifacts bucket, under scripts/, ending .py",
                                    SCRIPT_KEY_PATTERN),
            "nodes": _parameter("Number of instances in the run (each gets the command)", NODES_PATTERN),
            "rendezvousHost": _parameter("Private IPv4 address of the first instance (hosts the rendezvous)",
                                         IPV4_PATTERN),
            "hparamsPrefix": _parameter("SSM path of the run's hyperparameters, under the stack's prefix",
                                        hparams_prefix_pattern(hparams_prefix), default=hparams_prefix),
        },
        "mainSteps": [{
            "action": "aws:runShellScript", "name": "startTraining",
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"timeoutSeconds": str(START_TIMEOUT_S),
                       "runCommand": ["#!/bin/bash", "set -euo pipefail", f"exec {RUN_PROGRAM} start {flags}"]},
        }],
    }


def stop_document() -> dict:
    return {
        "schemaVersion": "2.2",
        "description": "Stop a training run on the targeted fleet instances (SIGTERM to torchrun; the run is "
                       "recorded as STOPPED).",
        "parameters": {"runId": _parameter("Run id given to the start document", RUN_ID_PATTERN)},
        "mainSteps": [{
            "action": "aws:runShellScript", "name": "stopTraining",
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"timeoutSeconds": "180",
                       "runCommand": ["#!/bin/bash", "set -euo pipefail", f"exec {RUN_PROGRAM} stop --run-id '{{{{ runId }}}}'"]},
        }],
    }


@dataclass(frozen=True)
class TrainingRunCommandsArgs:
    ctx: AwsContext
    fleet_name: str
    hparams_prefix: str
    instance_role_name: pulumi.Input[str]
    launch_template_id: pulumi.Input[str]


class TrainingRunCommands(pulumi.ComponentResource):
    start_document_name: pulumi.Output[str]
    stop_document_name: pulumi.Output[str]

    def __init__(self, name: str, args: TrainingRunCommandsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:compute:TrainingRunCommands", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        documents = {}
        for kind, content in (("start", start_document(args.hparams_prefix)), ("stop", stop_document())):
            documents[kind] = aws.ssm.Document(
                f"{name}-{kind}", name=f"{args.fleet_name}-{kind}-training", document_type="Command",
                document_format="JSON", content=json.dumps(content, indent=1), target_type="/AWS::EC2::Instance",
                opts=child)
        # The instances may send these two documents, and only to this fleet's instances: those with
        # the fleet tag AND launched from this stack's launch template (EC2 sets the aws: tag itself
        # and nobody can set or change an aws: tag, so tagging another instance is not enough).
        aws.iam.RolePolicy(f"{name}-send", role=args.instance_role_name, policy=iam.document([
            iam.allow(["ssm:SendCommand"], [d.arn for d in documents.values()], sid="RunDocuments"),
            iam.allow(["ssm:SendCommand"], [args.ctx.arn("ec2", "instance/*")], sid="RunOnFleetInstances",
                      conditions={"StringEquals": {f"aws:ResourceTag/{FLEET_TAG_KEY}": args.fleet_name,
                                                   "aws:ResourceTag/aws:ec2launchtemplate:id": args.launch_template_id}}),
        ]), opts=child)
        self.start_document_name = documents["start"].name
        self.stop_document_name = documents["stop"].name
        self.register_outputs({"start_document_name": self.start_document_name,
                               "stop_document_name": self.stop_document_name})
