"""Training hyperparameters as SSM SecureString parameters under the stack's prefix."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class HyperParameterStoreArgs:
    prefix: str
    values: Mapping[str, str]
    kms_key_arn: pulumi.Input[str]

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"HyperParameterStoreArgs.prefix must start with / and not end with /: {self.prefix!r}")
        if not self.values:
            raise ValueError("HyperParameterStoreArgs.values is empty")


class HyperParameterStore(pulumi.ComponentResource):
    names: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: HyperParameterStoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:config:HyperParameterStore", name, None, opts)
        self.names = {}
        for key, value in sorted(args.values.items()):
            parameter = aws.ssm.Parameter(
                f"{name}-{key.replace('_', '-')}",
                name=f"{args.prefix}/{key}",
                type="SecureString",
                value=pulumi.Output.secret(value),
                key_id=args.kms_key_arn,
                description=f"Training hyperparameter {key}",
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.names[key] = parameter.name
        self.register_outputs({"names": self.names})
