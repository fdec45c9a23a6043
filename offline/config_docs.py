"""The README's tables of config limits, generated from the checks the programs run at config load.

    python -m offline.config_docs          # print the tables
    python -m offline.config_docs --write  # replace them in README.md (between the config-limits markers)

Every `ConfigReader` read reports its key, default and accepted values (shared/config_reader.py), and
every rule between keys its text, so the README cannot drift from what the code enforces.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from offline import runner
from shared.config_reader import KeySpec

README = runner.REPO / "README.md"
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


def keys_read(project: str, stack: str = "dev") -> dict[str, KeySpec]:
    """What the project's program reads, from a run of its stack file under mocks (gpu-training runs too
    when the pipeline references it, as in the offline plan)."""
    projects = runner.projects()
    outputs: dict[str, Any] = {}
    if project != "gpu-training":
        gpu = runner.run(projects["gpu-training"], stack)
        outputs = {f"gpu-training/{stack}": gpu.outputs}
    plan = runner.run(projects[project], stack, stack_outputs=outputs)
    return plan.keys_read


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


def render(readme: str) -> str:
    def replace(match: re.Match) -> str:
        return match.group(1) + table(keys_read(match.group("project"))) + match.group(4)
    return _BLOCK.sub(replace, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the tables in README.md")
    args = parser.parse_args(argv)
    text = README.read_text()
    updated = render(text)
    if args.write:
        README.write_text(updated)
    else:
        for project in runner.projects():
            print(f"## {project}\n{table(keys_read(project))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
