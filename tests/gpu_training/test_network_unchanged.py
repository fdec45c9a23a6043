"""gpu-training's dev and prod plans are exactly what they were before the network component learnt the
training jobs' isolated mode (issue 9): the same resources (type, name, URN, parent) with the same inputs,
and the same stack outputs. A changed URN would replace a deployed VPC, subnet or NAT gateway.

The golden file was written from main (380997e) before shared/network.py changed. Regenerate it only for
an intended change of gpu-training's plan: ``.venv/bin/python -m tests.gpu_training.test_network_unchanged``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline import runner

GOLDEN = Path(__file__).parent / "data" / "gpu_plans_golden.json"


def snapshot(plan: runner.Plan) -> dict:
    """Plain, JSON-comparable data: every registered resource (components too) and the stack outputs."""
    inputs = {r.urn: r.inputs for r in plan.resources}
    resources = {urn: {"type": reg["type"], "name": reg["name"], "parent": reg["parent"] or "",
                       "custom": bool(reg["custom"]), "inputs": inputs.get(urn)}
                 for urn, reg in plan.registrations.items()}
    return json.loads(json.dumps({"resources": resources, "outputs": plan.outputs}, sort_keys=True, default=repr))


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def _compare(before: dict, after: dict) -> None:
    added = sorted(set(after["resources"]) - set(before["resources"]))
    removed = sorted(set(before["resources"]) - set(after["resources"]))
    assert not added and not removed, f"URNs added: {added}; removed: {removed}"
    changed = {urn: (before["resources"][urn], after["resources"][urn]) for urn in before["resources"]
               if before["resources"][urn] != after["resources"][urn]}
    assert not changed, f"resources whose type, parent or inputs changed: {json.dumps(changed, indent=1)[:4000]}"
    assert after["outputs"] == before["outputs"]


def test_dev_plan_unchanged(gpu_plan, golden):
    assert len(golden["dev"]["resources"]) > 70  # the whole stack, not an empty file
    _compare(golden["dev"], snapshot(gpu_plan))


def test_prod_plan_unchanged(prod_plans, golden):
    assert len(golden["prod"]["resources"]) > 80
    _compare(golden["prod"], snapshot(prod_plans[0]))


if __name__ == "__main__":
    import tests.conftest  # noqa: F401  (fake credentials, event loop)
    project = runner.projects()["gpu-training"]
    GOLDEN.write_text(json.dumps({stack: snapshot(runner.run(project, stack)) for stack in ("dev", "prod")},
                                 indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
