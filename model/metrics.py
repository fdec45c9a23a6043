"""The metric lines the trainer prints and the definitions SageMaker parses them with (contract 6).

The training state machine passes `METRIC_DEFINITIONS` as `AlgorithmSpecification.MetricDefinitions`
(and the tuning job's objective is `OBJECTIVE`); `line` is the only way the trainer prints a metric,
so the two cannot drift apart.
"""

from __future__ import annotations

NAMES = ("train:loss", "train:accuracy", "validation:loss", "validation:accuracy")
OBJECTIVE = {"Type": "Maximize", "MetricName": "validation:accuracy"}
METRIC_DEFINITIONS = [{"Name": name, "Regex": f"METRIC {name}=([0-9.eE+-]+)"} for name in NAMES]


def line(name: str, value: float) -> str:
    """`METRIC <name>=<value>` for a known name and a finite value."""
    if name not in NAMES:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(NAMES)}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"metric {name} is not finite: {value}")
    return f"METRIC {name}={value:.6g}"
