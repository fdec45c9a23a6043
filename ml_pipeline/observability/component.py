"""The stack's dashboards and alarms, and drift detection when an endpoint and a training workflow exist.

Everything watched comes in by name (typed args), never looked up: the endpoint and its variants are
owned by the deployment workflow, not by Pulumi, so they are plain names. Sections are optional so the
stack can be built area by area: ``endpoint`` adds the model dashboard, its alarms and the composite
"serving unhealthy" alarm; ``api`` the API and stream dashboard and alarms; ``training`` the workflow
widgets and failure alarm; ``endpoint`` + ``training`` + ``drift`` the drift monitor.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from ml_pipeline.observability import alarm_specs, dashboards
from ml_pipeline.observability.drift import DriftMonitor, DriftMonitorArgs
from ml_pipeline.observability.settings import ObservabilitySettings
from shared.context import AwsContext


@dataclass(frozen=True)
class IngestTargets:
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    function_name: pulumi.Input[str]
    log_group_name: pulumi.Input[str]


@dataclass(frozen=True)
class EndpointTargets:
    """``variants[0]`` is the production variant (champion)."""

    endpoint_name: str
    variants: Sequence[str] = ("champion", "challenger")
    # Other alarms the composite should include: the deployment's own rollback alarms (metric alarms, which
    # SageMaker's guardrails can read; see _serving_alarms).
    extra_alarm_names: Sequence[pulumi.Input[str]] = ()


@dataclass(frozen=True)
class ApiTargets:
    api_name: pulumi.Input[str]
    stage: pulumi.Input[str]
    stream_name: pulumi.Input[str]
    consumer_function_name: pulumi.Input[str]
    functions: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # the API's, keyed by role
    failure_queue_name: Optional[pulumi.Input[str]] = None
    # The consumer's iterator age that alarms; keep it below the event source's maximum record age.
    iterator_age_alarm_seconds: int = 300


@dataclass(frozen=True)
class TrainingTargets:
    state_machine_arn: pulumi.Input[str]
    model_name: str
    functions: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # keyed by role


@dataclass(frozen=True)
class DriftSources:
    """Where the drift function reads (see DriftMonitorArgs)."""

    capture_bucket_name: pulumi.Input[str]
    capture_bucket_arn: pulumi.Input[str]
    capture_prefix: str
    snapshot_bucket_name: pulumi.Input[str]
    snapshot_bucket_arn: pulumi.Input[str]
    snapshot_prefix: str
    shard_bucket_arn: pulumi.Input[str]
    shard_prefix: str
    model_versions_table_name: pulumi.Input[str]
    model_versions_table_arn: pulumi.Input[str]
    layer_arn: pulumi.Input[str]
    architecture: str
    target_size: int
    model_versions_key_arn: Optional[pulumi.Input[str]] = None


@dataclass(frozen=True)
class ObservabilityArgs:
    ctx: AwsContext
    name_prefix: str
    settings: ObservabilitySettings
    metric_namespace: str
    alarm_topic_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]
    log_kms_key_arn: pulumi.Input[str]
    log_retention_days: int
    ingest: IngestTargets
    # More functions to watch, keyed by their role in the stack (alarm and resource names use the key).
    functions: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    endpoint: Optional[EndpointTargets] = None
    api: Optional[ApiTargets] = None
    training: Optional[TrainingTargets] = None
    drift: Optional[DriftSources] = None

    def __post_init__(self) -> None:
        if self.drift is not None and (self.endpoint is None or self.training is None):
            raise ValueError("ObservabilityArgs.drift needs endpoint (what to watch) and training (what to retrain)")


def _resolved(*values) -> pulumi.Output[list]:
    return pulumi.Output.all(*values)


class Observability(pulumi.ComponentResource):
    serving_unhealthy_alarm_name: Optional[str]
    drift: Optional[DriftMonitor]
    dashboard_names: list[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:observability:Observability", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        s, prefix = args.settings, args.name_prefix
        self.drift = None
        if args.drift is not None:
            d = args.drift
            self.drift = DriftMonitor(f"{name}-drift", DriftMonitorArgs(
                ctx=args.ctx, name_prefix=prefix, settings=s, metric_namespace=args.metric_namespace,
                endpoint_name=args.endpoint.endpoint_name, variants=tuple(args.endpoint.variants),
                capture_bucket_name=d.capture_bucket_name, capture_bucket_arn=d.capture_bucket_arn,
                capture_prefix=d.capture_prefix, snapshot_bucket_name=d.snapshot_bucket_name,
                snapshot_bucket_arn=d.snapshot_bucket_arn, snapshot_prefix=d.snapshot_prefix,
                shard_bucket_arn=d.shard_bucket_arn, shard_prefix=d.shard_prefix,
                model_versions_table_name=d.model_versions_table_name, model_versions_table_arn=d.model_versions_table_arn,
                model_name=args.training.model_name, state_machine_arn=args.training.state_machine_arn,
                data_key_arn=args.data_key_arn, log_kms_key_arn=args.log_kms_key_arn, layer_arn=d.layer_arn,
                architecture=d.architecture, target_size=d.target_size, alarm_topic_arn=args.alarm_topic_arn,
                log_retention_days=args.log_retention_days, model_versions_key_arn=d.model_versions_key_arn,
            ), opts=self._child)

        functions: dict[str, pulumi.Input[str]] = {"ingest": args.ingest.function_name, **args.functions}
        if args.training is not None:
            functions.update(args.training.functions)
        if args.api is not None:
            functions.update({"stream-consumer": args.api.consumer_function_name, **args.api.functions})
        if self.drift is not None:
            functions["drift"] = self.drift.function.name

        self.dashboard_names = []
        self._alarms: list[aws.cloudwatch.MetricAlarm] = []
        self._pipeline_dashboard(functions)
        if args.endpoint is not None:
            self._model_dashboard()
        if args.api is not None:
            self._api_dashboard()

        self.serving_unhealthy_alarm_name = None
        self._function_alarms(functions)
        if args.training is not None:
            self._alarm("workflow-failed", alarm_specs.summed(
                f"{prefix}-training-workflow-failed", "A training workflow run failed, timed out or was aborted",
                "AWS/States", ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"),
                {"StateMachineArn": args.training.state_machine_arn}))
        api_alarms = self._api_alarms() if args.api is not None else []
        if args.endpoint is not None:
            self._serving_alarms(api_alarms)
        self.register_outputs({"dashboards": self.dashboard_names,
                               "serving_unhealthy_alarm_name": self.serving_unhealthy_alarm_name})

    # -- dashboards ----------------------------------------------------------------------------
    def _dashboard(self, suffix: str, body: pulumi.Output[dict]) -> None:
        dashboard_name = f"{self._args.name_prefix}-{suffix}"
        aws.cloudwatch.Dashboard(f"{self._name}-{suffix}", dashboard_name=dashboard_name,
                                 dashboard_body=body.apply(lambda b: json.dumps(b, separators=(",", ":"))),
                                 opts=self._child)
        self.dashboard_names.append(dashboard_name)

    def _pipeline_dashboard(self, functions: dict) -> None:
        a, i, t = self._args, self._args.ingest, self._args.training
        state_machine = t.state_machine_arn if t is not None else None
        body = _resolved(a.ctx.region, i.queue_name, i.dead_letter_queue_name, i.function_name, i.log_group_name,
                         state_machine, *functions.values()).apply(lambda v: dashboards.pipeline_dashboard(dashboards.PipelineNames(
                             region=v[0], namespace=a.metric_namespace, ingest_queue=v[1], ingest_dlq=v[2],
                             ingest_function=v[3], ingest_log_group=v[4], functions=v[6:],
                             workflow=dashboards.WorkflowNames(v[5], t.model_name) if t is not None else None)))
        self._dashboard("pipeline", body)

    def _model_dashboard(self) -> None:
        a, e = self._args, self._args.endpoint
        model_name = a.training.model_name if a.training is not None else "image-classifier"
        body = a.ctx.region.apply(lambda region: dashboards.model_dashboard(dashboards.ModelNames(
            region=region, namespace=a.metric_namespace, endpoint_name=e.endpoint_name, variants=tuple(e.variants),
            model_name=model_name, drift_alarm_threshold=a.settings.drift_psi_threshold)))
        self._dashboard("model", body)

    def _api_dashboard(self) -> None:
        a, p = self._args, self._args.api
        body = _resolved(a.ctx.region, p.api_name, p.stage, p.stream_name, p.consumer_function_name,
                         p.failure_queue_name, *p.functions.values()).apply(
            lambda v: dashboards.api_dashboard(dashboards.ApiNames(
                region=v[0], api_name=v[1], stage=v[2], stream_name=v[3], consumer_function=v[4],
                failure_queue=v[5], functions=v[6:])))
        self._dashboard("api-stream", body)

    # -- alarms --------------------------------------------------------------------------------
    def _alarm(self, suffix: str, spec: dict) -> str:
        topic = self._args.alarm_topic_arn
        self._alarms.append(aws.cloudwatch.MetricAlarm(
            f"{self._name}-{suffix}", **spec, alarm_actions=[topic], ok_actions=[topic], opts=self._child))
        return spec["name"]

    def _function_alarms(self, functions: dict) -> None:
        a = self._args
        for key, function_name in functions.items():
            self._alarm(f"{key}-fn-error-rate", alarm_specs.error_rate(
                f"{a.name_prefix}-{key}-fn-error-rate", f"Over {a.settings.error_rate_percent:g}% of invocations failed for 5 minutes",
                "AWS/Lambda", ("Errors",), "Invocations", {"FunctionName": function_name},
                percent=a.settings.error_rate_percent, period=300, evaluation_periods=1))

    def _api_alarms(self) -> list[str]:
        a, p, prefix = self._args, self._args.api, self._args.name_prefix
        s = a.settings
        api_5xx = self._alarm("api-5xx-rate", alarm_specs.error_rate(
            f"{prefix}-api-5xx-rate", f"Over {s.error_rate_percent:g}% of API requests answered 5xx for 3 minutes",
            "AWS/ApiGateway", ("5XXError",), "Count", {"ApiName": p.api_name, "Stage": p.stage},
            percent=s.error_rate_percent))
        self._alarm("stream-iterator-age", alarm_specs.threshold(
            f"{prefix}-stream-iterator-age", f"The stream's consumer is over {p.iterator_age_alarm_seconds} s behind",
            "AWS/Lambda", "IteratorAge", {"FunctionName": p.consumer_function_name}, "Maximum",
            p.iterator_age_alarm_seconds * 1000.0, period=60, evaluation_periods=5))
        if p.failure_queue_name is not None:
            self._alarm("stream-failures", alarm_specs.threshold(
                f"{prefix}-stream-failed-records", "The stream's consumer gave up on records (on-failure queue)",
                "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": p.failure_queue_name}, "Maximum", 0))
        return [api_5xx]

    def _serving_alarms(self, api_alarms: list[str]) -> None:
        a, e, prefix = self._args, self._args.endpoint, self._args.name_prefix
        s = a.settings
        members = list(api_alarms)
        for variant in e.variants:
            dims = {"EndpointName": e.endpoint_name, "VariantName": variant}
            members.append(self._alarm(f"{variant}-error-rate", alarm_specs.error_rate(
                f"{prefix}-{variant}-error-rate",
                f"{variant}: over {s.error_rate_percent:g}% of invocations answered 5xx or failed in the model",
                "AWS/SageMaker", ("Invocation5XXErrors", "InvocationModelErrors"), "Invocations", dims,
                percent=s.error_rate_percent)))
            members.append(self._alarm(f"{variant}-latency-anomaly", alarm_specs.anomaly_band(
                f"{prefix}-{variant}-latency-anomaly", f"{variant}: p90 ModelLatency above its expected band",
                "AWS/SageMaker", "ModelLatency", dims, "p90", band_width=s.anomaly_band_width,
                comparison="GreaterThanUpperThreshold")))
        production = {"EndpointName": e.endpoint_name, "VariantName": e.variants[0]}
        # Traffic outside its band (a drop as much as a surge) is news, not a reason to roll back.
        self._alarm("invocations-anomaly", alarm_specs.anomaly_band(
            f"{prefix}-invocations-anomaly", f"{e.variants[0]}: invocations outside their expected band",
            "AWS/SageMaker", "Invocations", production, "Sum", band_width=s.anomaly_band_width,
            comparison="LessThanLowerOrGreaterThanUpperThreshold"))
        # For people and the alarm topic, not for the guardrails: SageMaker's AutoRollbackConfiguration takes
        # "CloudWatch alarms ... configured to monitor metrics on an endpoint" (at most 10) and reads them with
        # cloudwatch:DescribeAlarms, which without AlarmTypes returns metric alarms only; no AWS document says a
        # composite alarm works there. So the deployment rolls back on its own metric alarms (passed in as
        # extra_alarm_names, members of this composite), and this alarm says "serving is unhealthy" in one place.
        self.serving_unhealthy_alarm_name = f"{prefix}-serving-unhealthy"
        rule = _resolved(*members, *e.extra_alarm_names).apply(
            lambda names: " OR ".join(f'ALARM("{n}")' for n in names))
        topic = a.alarm_topic_arn
        aws.cloudwatch.CompositeAlarm(
            f"{self._name}-serving-unhealthy", alarm_name=self.serving_unhealthy_alarm_name,
            alarm_description="Serving is unhealthy: an endpoint variant's error rate or latency, the API's 5xx "
                              "rate, or one of the deployment's rollback alarms is alarming.",
            alarm_rule=rule, alarm_actions=[topic], ok_actions=[topic],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self._alarms)))
