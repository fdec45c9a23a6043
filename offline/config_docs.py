"""The README's generated tables: config limits (from the checks the programs run at config load) and
each stack's monthly cost (offline/cost.py).

    python -m offline.config_docs          # print the tables
    python -m offline.config_docs --write  # replace them in README.md (between the config-limits and cost markers)

Every `ConfigReader` read reports its key, default and accepted values (shared/config_reader.py), and
every rule between keys its text, so the README cannot drift from what the code enforces.
"""
from __future__ import annotations

import argparse
import json
import re
import sys

from offline import runner
from shared.config_reader import KeySpec

README = runner.REPO / "README.md"
_COST_BLOCK = re.compile(r"(<!-- cost:(?P<project>[\w-]+):start -->\n)(?P<body>.*?)(<!-- cost:(?P=project):end -->)", re.S)
_BLOCK = re.compile(r"(<!-- config-limits:(?P<project>[\w-]+):start -->\n)(?P<body>.*?)(<!-- config-limits:(?P=project):end -->)",
                    re.S)


def _default(spec: KeySpec) -> str:
    if spec.default is None or spec.default == "" or spec.default == [] or spec.default == {}:
        return "unset" if spec.kind != "rule" else ""
    if isinstance(spec.default, float) and spec.default.is_integer():
        return str(int(spec.default))
    if isinstance(spec.default, bool):
        return str(spec.default).lower()
    if isinstance(spec.default, (list, dict)):
        return json.dumps(spec.default)
    return str(spec.default)


def table(specs: dict[str, KeySpec]) -> str:
    rows = ["| key | type | default | accepted |", "|---|---|---|---|"]
    for spec in sorted((s for s in specs.values() if s.kind != "rule"), key=lambda s: s.key):
        rows.append(f"| `{spec.key}` | {spec.kind} | {_default(spec)} | {spec.limits} |".replace("  ", " "))
    rules = sorted((s for s in specs.values() if s.kind == "rule"), key=lambda s: s.key)
    if rules:
        rows.append("")
        rows.append("Rules between keys:")
        rows.extend(f"- {', '.join(f'`{k}`' for k in spec.key.split())}: {spec.limits}" for spec in rules)
    return "\n".join(rows) + "\n"


def cost_table(plan: runner.Plan) -> str:
    from offline import cost
    return "```\n" + cost.render_table(cost.estimate(plan)) + "\n```\n"


def render(readme: str) -> str:
    plans = {p.project: p for p in dev_plans()}

    def limits(match: re.Match) -> str:
        return match.group(1) + table(plans[match.group("project")].keys_read) + match.group(4)

    def costs(match: re.Match) -> str:
        return match.group(1) + cost_table(plans[match.group("project")]) + match.group(4)
    return _COST_BLOCK.sub(costs, _BLOCK.sub(limits, readme))


def dev_plans() -> list[runner.Plan]:
    """Both dev stacks from their stack files, as `make plan` runs them."""
    projects = runner.projects()
    return [runner.run(projects["gpu-training"], "dev"), runner.run(projects["ml-pipeline"], "dev")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    args = parser.parse_args(argv)
    text = README.read_text()
    updated = render(text)
    if args.write:
        README.write_text(updated)
    else:
        for plan in dev_plans():
            print(f"## {plan.project}\n{table(plan.keys_read)}\n{cost_table(plan)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
