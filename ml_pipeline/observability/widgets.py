"""CloudWatch dashboard widgets as plain data, and a grid that places them.

Dashboard body reference: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
A metric entry is ``[namespace, name, dim1, value1, ..., {options}]``; expressions are
``[{"expression": ..., "label": ..., "id": ...}]``. Pure Python, so bodies are tested as data.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

GRID_WIDTH = 24


def metric(namespace: str, name: str, dimensions: Mapping[str, str] | None = None, *, stat: Optional[str] = None,
           label: Optional[str] = None, metric_id: Optional[str] = None, visible: bool = True,
           y_axis: Optional[str] = None) -> list:
    entry: list[Any] = [namespace, name]
    for key, value in (dimensions or {}).items():
        entry += [key, value]
    options: dict[str, Any] = {}
    if stat:
        options["stat"] = stat
    if label:
        options["label"] = label
    if metric_id:
        options["id"] = metric_id
    if not visible:
        options["visible"] = False
    if y_axis:
        options["yAxis"] = y_axis
    if options:
        entry.append(options)
    return entry


def expression(expr: str, label: str, metric_id: str) -> list:
    return [{"expression": expr, "label": label, "id": metric_id}]


def graph(title: str, metrics: Sequence[list], region: str, *, stat: str = "Sum", period: int = 300,
          width: int = 12, height: int = 6, view: str = "timeSeries", stacked: bool = False,
          annotations: Optional[list[dict]] = None, y_min: Optional[float] = None) -> dict:
    properties: dict[str, Any] = {"title": title, "region": region, "metrics": list(metrics), "stat": stat,
                                  "period": period, "view": view, "stacked": stacked}
    if annotations:
        properties["annotations"] = {"horizontal": annotations}
    if y_min is not None:
        properties["yAxis"] = {"left": {"min": y_min}}
    return {"type": "metric", "width": width, "height": height, "properties": properties}


def logs_query(title: str, log_group: str, query: str, region: str, *, width: int = 12, height: int = 6,
               view: str = "table") -> dict:
    return {"type": "log", "width": width, "height": height,
            "properties": {"title": title, "region": region, "view": view,
                           "query": f"SOURCE '{log_group}' | {query}"}}


def text(markdown: str, *, width: int = GRID_WIDTH, height: int = 2) -> dict:
    return {"type": "text", "width": width, "height": height, "properties": {"markdown": markdown}}


def layout(widgets: Sequence[dict]) -> dict:
    """Row-major placement on the 24-column grid; returns the dashboard body."""
    placed, x, y, row_height = [], 0, 0, 0
    for widget in widgets:
        if x + widget["width"] > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**widget, "x": x, "y": y})
        x += widget["width"]
        row_height = max(row_height, widget["height"])
    return {"widgets": placed}


def metrics_named(body: Mapping[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (namespace, metric, dimension names) a dashboard body reads (tests check them)."""
    found = []
    for widget in body["widgets"]:
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], dict):
                continue  # an expression over other entries
            fields = [e for e in entry if not isinstance(e, dict)]
            found.append((fields[0], fields[1], tuple(fields[2::2])))
    return found
