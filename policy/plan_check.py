"""Run the policy pack's rules over an offline plan (offline/runner.py), as the engine would.

Resource policies get each resource's recorded inputs; stack policies get every resource's mocked
outputs (the engine sends outputs to stack policies). Values are wrapped in the same proxies the
engine uses, so a rule that works here reads the engine's values the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policy.rules import POLICIES


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.urn.rsplit('::', 1)[-1]}: {self.message}"


def _options(parent: str) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent or None)


def stack_resources(resources) -> list[PolicyResource]:
    """PolicyResources from recorded resources, dependencies linked by URN."""
    made: dict[str, PolicyResource] = {}
    for r in resources:
        outputs = {**r.inputs, **r.state}
        outputs.pop("id", None)  # the engine keeps the id beside the outputs, not in them
        made[r.urn] = PolicyResource(r.type, unknown_checking_proxy(outputs), r.urn, r.name, _options(r.parent),
                                     None, None, [], {})
    for r in resources:
        made[r.urn].dependencies = [made[d] for d in r.dependencies if d in made]
    return list(made.values())


def check(resources, policies: Optional[Iterable] = None) -> list[Violation]:
    """Every violation of ``policies`` (default: the whole pack) by a plan's recorded resources."""
    found: list[Violation] = []
    for policy in policies if policies is not None else POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(r.type, unknown_checking_proxy(dict(r.inputs)), r.urn, r.name,
                                              _options(r.parent), None)
                policy.validate(args, lambda message, urn=None, r=r, p=policy:
                                found.append(Violation(p.name, urn or r.urn, message)))
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(stack_resources(resources)),
                            lambda message, urn=None, p=policy: found.append(Violation(p.name, urn or "", message)))
    return found
