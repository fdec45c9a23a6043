"""Dashboards as data: every metric they name exists (AWS documented, or published by this project),
widgets fit the grid, expressions refer to series of their own widget."""
from __future__ import annotations

import json
import re

import pytest

from gpu_training.dashboard import GpuDashboardNames, gpu_dashboard
from metric_catalog import dashboard_metrics, problems

DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
IDENT = re.compile(r"\b([a-z][A-Za-z0-9_]*)\b(?!\s*\()")


def bodies(plan) -> dict[str, dict]:
    return {r.inputs["dashboardName"]: json.loads(r.inputs["dashboardBody"]) for r in plan.of_type(DASHBOARD)}


@pytest.fixture(scope="module")
def all_bodies(full_plan) -> dict[str, dict]:
    found = bodies(full_plan)
    found["gpu-training-test"] = gpu_dashboard(GpuDashboardNames(
        region="us-east-1", namespace="MLPlatform/gpu-training-test", fleet_name="gpu-training-test",
        target_capacity=6, metrics_interval_s=60))
    return found


def test_there_is_one_dashboard_per_concern(all_bodies):
    assert sorted(all_bodies) == ["gpu-training-test", "ml-pipeline-test-api-stream", "ml-pipeline-test-model",
                                  "ml-pipeline-test-pipeline"]


def test_every_metric_a_widget_names_exists(all_bodies):
    named = {name: dashboard_metrics(body) for name, body in all_bodies.items()}
    assert all(len(v) >= 8 for v in named.values()), {k: len(v) for k, v in named.items()}
    assert {name: problems(n) for name, n in named.items()} == {name: [] for name in named}


def test_the_check_reports_a_misspelt_metric_and_wrong_dimensions():
    assert problems([("AWS/SageMaker", "ModelLatencey", ("EndpointName", "VariantName")),
                     ("AWS/SQS", "ApproximateAgeOfOldestMessage", ("FunctionName",)),
                     ("MLPlatform/ml-pipeline-dev", "DriftScore", ("EndpointName",)),
                     ("MLPlatform/gpu-training-dev", "nvidia_smi_utilisation_gpu", ())]) == [
        "AWS/SageMaker ModelLatencey: not among the metrics documented at "
        "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html",
        "AWS/SQS ApproximateAgeOfOldestMessage: dimensions ['FunctionName'] are not a documented set",
        "MLPlatform/ml-pipeline-dev DriftScore: dimensions ['EndpointName'] but it is published with "
        "['EndpointName', 'VariantName']",
        "MLPlatform/gpu-training-dev nvidia_smi_utilisation_gpu: neither an agent measurement nor published "
        "by an instance script"]


def test_widgets_fit_the_grid_without_overlapping(all_bodies):
    for name, body in all_bodies.items():
        cells = set()
        for w in body["widgets"]:
            assert 0 <= w["x"] and w["x"] + w["width"] <= 24, (name, w)
            mine = {(x, y) for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])}
            assert not cells & mine, (name, w["properties"].get("title"))
            cells |= mine


def test_expressions_refer_to_series_of_their_widget(all_bodies):
    checked = 0
    for body in all_bodies.values():
        for w in body["widgets"]:
            entries = w.get("properties", {}).get("metrics", [])
            ids = {e[-1]["id"] for e in entries if isinstance(e[-1], dict) and "id" in e[-1]}
            for e in entries:
                if isinstance(e[0], dict) and not e[0]["expression"].startswith("SEARCH("):
                    used = set(IDENT.findall(e[0]["expression"]))
                    assert used and used <= ids, (w["properties"]["title"], used, ids)
                    checked += 1
    assert checked >= 3


def test_the_model_dashboard_shows_each_variants_latency_percentiles(all_bodies):
    widgets = {w["properties"].get("title"): w["properties"] for w in all_bodies["ml-pipeline-test-model"]["widgets"]}
    for variant in ("champion", "challenger"):
        for latency in ("ModelLatency", "OverheadLatency"):
            series = widgets[f"{variant}: {latency}"]["metrics"]
            assert [s[-1]["stat"] for s in series] == ["p50", "p90", "p99"]
            assert all(s[1] == latency and s[3] == "ml-pipeline-test-endpoint" and s[5] == variant for s in series)
        assert {s[1] for s in widgets[f"{variant}: invocations and errors"]["metrics"]} == {
            "Invocations", "Invocation4XXErrors", "Invocation5XXErrors"}


def test_the_pipeline_dashboard_watches_every_function_and_the_workflow(all_bodies):
    widgets = {w["properties"].get("title"): w["properties"] for w in all_bodies["ml-pipeline-test-pipeline"]["widgets"]}
    functions = {s[3] for s in widgets["Errors"]["metrics"]}
    assert functions == {f"ml-pipeline-test-{f}" for f in ("image-ingest", "training-snapshot", "serving-consumer",
                                                           "serving-predict", "drift-monitor")}
    outcomes = [s[1] for s in widgets["Workflow runs by outcome"]["metrics"]]
    assert outcomes == ["ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"]
    assert "reason" in widgets["Rejects by reason"]["query"]


def test_the_stack_plan_has_the_pipeline_dashboard_of_what_it_holds(pipeline_plan):
    found = bodies(pipeline_plan)
    # One dashboard per concern: pipeline, model (endpoint variants) and API + stream.
    assert set(found) == {"ml-pipeline-dev-pipeline", "ml-pipeline-dev-model", "ml-pipeline-dev-api-stream"}
    for each in found.values():
        assert problems(dashboard_metrics(each)) == []
    body = found["ml-pipeline-dev-pipeline"]
    titles = [w["properties"].get("title") for w in body["widgets"]]
    assert "Workflow runs by outcome" in titles  # the stack's training workflow
    values = json.dumps(body)
    state_machine = pipeline_plan.outputs["training_state_machine_arn"]
    assert state_machine in values
    for name in ("ml-pipeline-dev-ingest", "ml-pipeline-dev-ingest-dlq", "ml-pipeline-dev-image-ingest"):
        assert f'"{name}"' in values


def test_the_gpu_dashboard_counts_live_instances_against_the_target(all_bodies):
    widgets = {w["properties"].get("title"): w["properties"] for w in all_bodies["gpu-training-test"]["widgets"]}
    live = widgets["Live instances against the target"]
    assert live["metrics"][1][0]["expression"] == "beats / 5"  # 300 s periods of one heartbeat a minute
    assert live["annotations"]["horizontal"] == [{"label": "target capacity", "value": 6}]
    searches = [e[0]["expression"] for w in widgets.values() for e in w.get("metrics", []) if isinstance(e[0], dict)
                and e[0]["expression"].startswith("SEARCH(")]
    assert len(searches) == 3 and all("{MLPlatform/gpu-training-test,InstanceId}" in s for s in searches)


def test_the_gpu_dashboard_component_records_one_dashboard_named_after_the_fleet():
    from gpu_training.dashboard import GpuDashboard, GpuDashboardArgs
    from offline import runner
    plan = runner.run_callable(lambda: GpuDashboard("gpu-dashboard", GpuDashboardArgs(
        fleet_name="gpu-training-dev", namespace="MLPlatform/gpu-training-dev", target_capacity=6,
        metrics_interval_s=60, region="us-east-1")), "gpu-training", "dev")
    [dashboard] = plan.of_type(DASHBOARD)
    body = json.loads(dashboard.inputs["dashboardBody"])
    assert dashboard.inputs["dashboardName"] == "gpu-training-dev" and problems(dashboard_metrics(body)) == []


def test_the_drift_widget_draws_the_drift_alarms_threshold(pipeline_plan):
    # driftPsiThreshold moves the alarm; the line on the dashboard moves with it (it was a fixed 0.25).
    from ml_pipeline.observability.dashboards import ModelNames, model_dashboard
    body = model_dashboard(ModelNames(region="us-east-1", namespace="N", endpoint_name="e", variants=("a",),
                                      model_name="m", drift_alarm_threshold=0.4))
    [drift] = [w["properties"] for w in body["widgets"] if w["properties"].get("title", "").startswith("Drift score")]
    assert drift["annotations"]["horizontal"] == [{"label": "drift alarm", "value": 0.4}]
    # In the stack, the threshold drawn is the drift alarm's own.
    [model] = [json.loads(d.inputs["dashboardBody"]) for d in pipeline_plan.of_type(DASHBOARD)
               if d.inputs["dashboardName"].endswith("-model")]
    [drift] = [w["properties"] for w in model["widgets"] if w["properties"].get("title", "").startswith("Drift score")]
    [alarm] = [a.inputs for a in pipeline_plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
               if a.name == "observability-drift-alarm"]
    assert drift["annotations"]["horizontal"][0]["value"] == alarm["threshold"]
