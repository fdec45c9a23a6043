"""The ml-pipeline dashboards, one per concern, as functions from plain names to a dashboard body.

Each ``*_dashboard`` returns the body dict (``widgets``); the component serialises it once the names
are known. Metric names come from ``ml_pipeline.metric_names`` or AWS's documented metrics (a test
checks every one against ``tests/data/aws_metrics.json``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ml_pipeline import metric_names as names
from ml_pipeline.observability.widgets import expression, graph, layout, logs_query, metric, text

PERCENTILES = ("p50", "p90", "p99")
# Rejected images, by reason, from the ingest function's JSON logs (Lambda's JSON log format puts the
# `extra` fields at the top level). Rejects are not a metric: a reason per metric would be a custom
# metric per reason, and the log already carries it.
REJECTS_BY_REASON_QUERY = ("filter ispresent(reason) and message = 'quarantined' "
                           "| stats count(*) as images by reason | sort images desc")


@dataclass(frozen=True)
class WorkflowNames:
    state_machine_arn: str
    model_name: str


@dataclass(frozen=True)
class PipelineNames:
    region: str
    namespace: str  # MLPlatform/ml-pipeline-<stack>
    ingest_queue: str
    ingest_dlq: str
    ingest_function: str
    ingest_log_group: str
    functions: Sequence[str]  # every function of the stack (errors, duration, throttles, concurrency)
    workflow: Optional[WorkflowNames] = None


@dataclass(frozen=True)
class ModelNames:
    region: str
    namespace: str
    endpoint_name: str
    variants: Sequence[str]
    model_name: str
    drift_alarm_threshold: float  # driftPsiThreshold: drawn on the drift widget where the drift alarm fires
    drift_features: Sequence[str] = field(default_factory=lambda: names.DRIFT_FEATURES)


@dataclass(frozen=True)
class ApiNames:
    region: str
    api_name: str
    stage: str
    stream_name: str
    consumer_function: str  # reads the stream (Lambda IteratorAge)
    functions: Sequence[str] = ()  # the API's and the stream's functions (errors, throttles)
    failure_queue: Optional[str] = None  # the consumer's on-failure destination


def _per_function(region: str, title: str, metric_name: str, functions: Sequence[str], stat: str) -> dict:
    return graph(title, [metric("AWS/Lambda", metric_name, {"FunctionName": f}, label=f) for f in functions],
                 region, stat=stat)


def pipeline_dashboard(n: PipelineNames) -> dict:
    r, q, dlq = n.region, {"QueueName": n.ingest_queue}, {"QueueName": n.ingest_dlq}
    widgets = [
        text("## Ingestion\nS3 → EventBridge → SQS → image_ingest; rejects are quarantined with their reason."),
        graph("Ingestion rate (images per 5 minutes)", [
            metric("AWS/SQS", "NumberOfMessagesSent", q, label="arrived"),
            metric("AWS/SQS", "NumberOfMessagesDeleted", q, label="ingested or rejected"),
        ], r),
        logs_query("Rejects by reason", n.ingest_log_group, REJECTS_BY_REASON_QUERY, r),
        graph("Dead-letter queue depth", [metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq, label="DLQ")],
              r, stat="Maximum", period=60, y_min=0),
        graph("Oldest waiting image (s)", [metric("AWS/SQS", "ApproximateAgeOfOldestMessage", q, label="queue age")],
              r, stat="Maximum", period=60, y_min=0),
        graph("Ingest errors the function counts", [
            metric(n.namespace, name, label=name) for name in (
                names.INGEST_ACCESS_DENIED, names.INGEST_PERMANENT_ERRORS, names.INGEST_SOURCE_MISSING,
                names.INGEST_STATISTICS_NOT_RECORDED)], r),
        text("## Functions"),
        _per_function(r, "Errors", "Errors", n.functions, "Sum"),
        _per_function(r, "Duration p90 (ms)", "Duration", n.functions, "p90"),
        _per_function(r, "Throttles", "Throttles", n.functions, "Sum"),
        _per_function(r, "Concurrent executions", "ConcurrentExecutions", n.functions, "Maximum"),
    ]
    if n.workflow is not None:
        sm, model = {"StateMachineArn": n.workflow.state_machine_arn}, {"ModelName": n.workflow.model_name}
        widgets += [
            text("## Training workflow"),
            graph("Workflow runs by outcome", [
                metric("AWS/States", outcome, sm, label=outcome.removeprefix("Executions"))
                for outcome in ("ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted")],
                r, period=3600, view="bar", stacked=True),
            graph("Training duration (s) and workflow time (ms)", [
                metric(n.namespace, names.TRAINING_DURATION_SECONDS, model, stat="Maximum", label="training job (s)"),
                metric("AWS/States", "ExecutionTime", sm, stat="Maximum", label="workflow (ms)", y_axis="right"),
            ], r, stat="Maximum", period=3600),
            graph("Spot savings (%)", [metric(n.namespace, names.SPOT_SAVINGS_PERCENT, model, label="saved")],
                  r, stat="Average", period=3600, y_min=0),
        ]
    return layout(widgets)


def model_dashboard(n: ModelNames) -> dict:
    r, widgets = n.region, [text(f"## Endpoint {n.endpoint_name}\nPer variant; latencies in microseconds.")]
    for variant in n.variants:
        v = {"EndpointName": n.endpoint_name, "VariantName": variant}
        widgets += [
            graph(f"{variant}: invocations and errors", [
                metric("AWS/SageMaker", "Invocations", v, label="invocations"),
                metric("AWS/SageMaker", "Invocation4XXErrors", v, label="4xx"),
                metric("AWS/SageMaker", "Invocation5XXErrors", v, label="5xx"),
            ], r, period=60, width=8),
            graph(f"{variant}: ModelLatency", [metric("AWS/SageMaker", "ModelLatency", v, stat=p, label=p)
                                               for p in PERCENTILES], r, stat="p50", period=60, width=8),
            graph(f"{variant}: OverheadLatency", [metric("AWS/SageMaker", "OverheadLatency", v, stat=p, label=p)
                                                  for p in PERCENTILES], r, stat="p50", period=60, width=8),
        ]
    widgets.append(graph("Model accuracy (evaluation reports)", [
        metric(n.namespace, names.MODEL_ACCURACY, {"ModelName": n.model_name}, label="accuracy")],
        r, stat="Maximum", period=86400, y_min=0))
    widgets.append(graph("Drift score (largest PSI) per variant", [
        metric(n.namespace, names.DRIFT_SCORE, {"EndpointName": n.endpoint_name, "VariantName": v}, label=v)
        for v in n.variants], r, stat="Maximum", period=3600, y_min=0,
        annotations=[{"label": "drift alarm", "value": n.drift_alarm_threshold}]))
    for variant in n.variants:
        dims = {"EndpointName": n.endpoint_name, "VariantName": variant}
        widgets.append(graph(f"{variant}: drift by input statistic and prediction (PSI)", [
            *[metric(n.namespace, names.INPUT_DRIFT_PSI, {**dims, "Feature": f}, label=f) for f in n.drift_features],
            metric(n.namespace, names.PREDICTION_DRIFT_PSI, dims, label="predicted class"),
        ], r, stat="Maximum", period=3600, y_min=0))
    return layout(widgets)


def api_dashboard(n: ApiNames) -> dict:
    r, api = n.region, {"ApiName": n.api_name, "Stage": n.stage}
    stream = {"StreamName": n.stream_name}
    widgets = [
        text(f"## API {n.api_name} ({n.stage})\nThrottled requests answer 429 and count in 4XXError "
             "(API Gateway publishes no separate throttle metric for REST APIs)."),
        graph("Requests", [metric("AWS/ApiGateway", "Count", api, label="requests")], r, period=60),
        graph("Latency (ms)", [metric("AWS/ApiGateway", "Latency", api, stat=p, label=p) for p in PERCENTILES]
              + [metric("AWS/ApiGateway", "IntegrationLatency", api, stat="p90", label="integration p90")],
              r, stat="p50", period=60),
        graph("Error rate (%)", [
            metric("AWS/ApiGateway", "Count", api, metric_id="count", visible=False),
            metric("AWS/ApiGateway", "4XXError", api, metric_id="e4", visible=False),
            metric("AWS/ApiGateway", "5XXError", api, metric_id="e5", visible=False),
            expression("IF(count > 0, 100 * e4 / count, 0)", "4xx (incl. 429 throttles) %", "r4"),
            expression("IF(count > 0, 100 * e5 / count, 0)", "5xx %", "r5"),
        ], r, period=60, y_min=0),
        graph("Errors", [metric("AWS/ApiGateway", "4XXError", api, label="4xx"),
                         metric("AWS/ApiGateway", "5XXError", api, label="5xx")], r, period=60),
        text(f"## Stream {n.stream_name}"),
        graph("Iterator age (ms)", [
            metric("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", stream, label="stream"),
            metric("AWS/Lambda", "IteratorAge", {"FunctionName": n.consumer_function}, label=n.consumer_function),
        ], r, stat="Maximum", period=60, y_min=0),
        graph("Records in and failed", [
            metric("AWS/Kinesis", "IncomingRecords", stream, label="incoming"),
            metric("AWS/Kinesis", "PutRecords.FailedRecords", stream, label="put failed"),
            metric("AWS/Kinesis", "PutRecords.ThrottledRecords", stream, label="put throttled"),
            metric("AWS/Kinesis", "WriteProvisionedThroughputExceeded", stream, label="write throughput exceeded"),
        ], r, period=60),
    ]
    if n.failure_queue:
        widgets.append(graph("Records the consumer gave up on (on-failure queue)", [
            metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": n.failure_queue}, label="failed")],
            r, stat="Maximum", period=60, y_min=0))
    functions = list(dict.fromkeys([n.consumer_function, *n.functions]))
    widgets += [_per_function(r, "Function errors", "Errors", functions, "Sum"),
                _per_function(r, "Function throttles", "Throttles", functions, "Sum")]
    return layout(widgets)
