"""Alarms: every field checked against botocore's PutMetricAlarm / PutCompositeAlarm model (enums too),
every metric they read exists, every action goes to the encrypted alarm topic, the composite names real
alarms, and the drift alarm's state change starts retraining only when configured."""
from __future__ import annotations

import json
import re

import boto3
from moto import mock_aws

from policy import rules
from tests.iam_validators import documents_of
from tests.iam_validators import problems as iam_problems

import full_program
from cloudwatch_api import errors, put_composite_alarm, put_metric_alarm, put_rule, put_targets
from metric_catalog import alarm_metrics, problems

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
BAND_OPERATORS = {"LessThanLowerOrGreaterThanUpperThreshold", "GreaterThanUpperThreshold", "LessThanLowerThreshold"}


def observability_alarms(plan) -> list:
    return [a for a in plan.of_type(ALARM) if a.name.startswith("observability-")]


def test_every_alarm_is_a_valid_put_metric_alarm_request(full_plan, pipeline_plan):
    alarms = observability_alarms(full_plan) + observability_alarms(pipeline_plan)
    assert len(alarms) >= 15
    assert {a.name: errors("PutMetricAlarm", put_metric_alarm(a.inputs)) for a in alarms} == {a.name: [] for a in alarms}
    [composite] = full_plan.of_type(COMPOSITE)
    assert errors("PutCompositeAlarm", put_composite_alarm(composite.inputs)) == []


def test_the_model_check_reports_a_wrong_enum_and_a_missing_field(full_plan):
    inputs = dict(full_plan.one(ALARM, "observability-champion-latency-anomaly").inputs,
                  comparisonOperator="GreaterThanUpperBand", treatMissingData="notBreaching")
    params = put_metric_alarm(inputs)
    del params["Metrics"][0]["Id"]
    found = errors("PutMetricAlarm", params)
    assert any("Missing required parameter" in e and "Id" in e for e in found)
    assert any("GreaterThanUpperBand" in e for e in found)


def test_every_metric_an_alarm_reads_exists(full_plan, pipeline_plan):
    named = [m for a in observability_alarms(full_plan) + observability_alarms(pipeline_plan) for m in alarm_metrics(a.inputs)]
    assert len(named) >= 25 and problems(named) == []


def _queries(alarm) -> dict[str, dict]:
    return {q["id"]: q for q in alarm.inputs.get("metricQueries") or []}


def test_alarms_are_well_formed(full_plan):
    for alarm in observability_alarms(full_plan):
        i, queries = alarm.inputs, _queries(alarm)
        assert i["treatMissingData"] in ("notBreaching", "breaching", "ignore", "missing")
        if queries:
            assert "metricName" not in i and sum(bool(q.get("returnData")) for q in queries.values()) in (1, 2)
            for q in queries.values():
                for ref in re.findall(r"\b(total|e\d|m\d|band|rate)\b", q.get("expression", "")):
                    assert ref in queries, (alarm.name, ref)
            periods = {q["metric"]["period"] for q in queries.values() if q.get("metric")}
            assert len(periods) == 1, alarm.name
            period = periods.pop()
        else:
            period = i["period"]
        # CloudWatch: evaluation periods x period at most one day.
        assert period * i["evaluationPeriods"] <= 86400, alarm.name
        if i.get("thresholdMetricId"):
            band = queries[i["thresholdMetricId"]]
            assert band["expression"].startswith("ANOMALY_DETECTION_BAND(m1, ") and band["returnData"] is True
            assert i["comparisonOperator"] in BAND_OPERATORS and "threshold" not in i
        else:
            assert i["comparisonOperator"] not in BAND_OPERATORS and "threshold" in i


def test_latency_and_invocations_have_anomaly_bands(full_plan):
    banded = {a.inputs["name"]: _queries(a)["m1"]["metric"] for a in observability_alarms(full_plan)
              if a.inputs.get("thresholdMetricId")}
    assert {n: (m["metricName"], m["stat"], m["dimensions"]["VariantName"]) for n, m in banded.items()} == {
        "ml-pipeline-test-champion-latency-anomaly": ("ModelLatency", "p90", "champion"),
        "ml-pipeline-test-challenger-latency-anomaly": ("ModelLatency", "p90", "challenger"),
        "ml-pipeline-test-invocations-anomaly": ("Invocations", "Sum", "champion"),
    }


def test_error_rates_divide_errors_by_traffic(full_plan):
    rates = {a.inputs["name"]: _queries(a) for a in observability_alarms(full_plan) if "rate" in _queries(a)}
    expected = {f"ml-pipeline-test-{k}-fn-error-rate" for k in
                ("ingest", "training-snapshot", "stream-consumer", "predict", "drift")}
    expected |= {"ml-pipeline-test-api-5xx-rate", "ml-pipeline-test-champion-error-rate",
                 "ml-pipeline-test-challenger-error-rate"}
    assert set(rates) == expected
    endpoint = rates["ml-pipeline-test-champion-error-rate"]
    assert endpoint["rate"]["expression"] == "IF(total > 0, 100 * (FILL(e0, 0) + FILL(e1, 0)) / total, 0)"
    assert (endpoint["total"]["metric"]["metricName"], endpoint["e0"]["metric"]["metricName"],
            endpoint["e1"]["metric"]["metricName"]) == ("Invocations", "Invocation5XXErrors", "InvocationModelErrors")


def test_every_action_goes_to_the_encrypted_alarm_topic(full_plan, pipeline_plan):
    for alarm in observability_alarms(full_plan) + full_plan.of_type(COMPOSITE):
        assert alarm.inputs["alarmActions"] == [full_program.TOPIC_ARN] == alarm.inputs["okActions"], alarm.name
    topic = pipeline_plan.one("aws:sns/topic:Topic", "alarms")
    assert topic.inputs["kmsMasterKeyId"].startswith("arn:aws:kms:")
    arn = pipeline_plan.outputs["alarm_topic_arn"]
    wired = observability_alarms(pipeline_plan)
    assert wired and all(a.inputs["alarmActions"] == [arn] for a in wired)


def test_serving_unhealthy_combines_the_endpoint_and_api_alarms(full_plan):
    [composite] = full_plan.of_type(COMPOSITE)
    assert composite.inputs["alarmName"] == "ml-pipeline-test-serving-unhealthy"
    members = re.findall(r'ALARM\("([^"]+)"\)', composite.inputs["alarmRule"])
    own = {a.inputs["name"] for a in observability_alarms(full_plan)}
    assert set(members) - own == {"ml-pipeline-test-champion-5xx-rollback"}  # the deployment's, passed in
    assert set(members) & own == {"ml-pipeline-test-api-5xx-rate", "ml-pipeline-test-champion-error-rate",
                                  "ml-pipeline-test-challenger-error-rate", "ml-pipeline-test-champion-latency-anomaly",
                                  "ml-pipeline-test-challenger-latency-anomaly"}
    assert " OR ".join(f'ALARM("{m}")' for m in members) == composite.inputs["alarmRule"]
    # Created after its members (a rule naming a missing alarm is rejected).
    member_urns = {a.urn for a in observability_alarms(full_plan) if a.inputs["name"] in members}
    assert member_urns <= set(composite.dependencies)


def test_drift_alarm_watches_the_production_variant(full_plan):
    alarm = full_plan.one(ALARM, "observability-drift-alarm").inputs
    assert (alarm["metricName"], alarm["namespace"], alarm["dimensions"], alarm["threshold"], alarm["period"]) == (
        "DriftScore", full_program.NAMESPACE,
        {"EndpointName": "ml-pipeline-test-endpoint", "VariantName": "champion"}, 0.25, 3600)


def _route_alarm_event(plan, alarm_arn: str, state: str) -> list[dict]:
    rule = plan.one("aws:cloudwatch/eventRule:EventRule", "observability-drift-retrain").inputs
    target = plan.one("aws:cloudwatch/eventTarget:EventTarget", "observability-drift-retrain-target").inputs
    with mock_aws():
        sqs, events = boto3.client("sqs"), boto3.client("events")
        url = sqs.create_queue(QueueName="training-stand-in")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="retrain", EventPattern=rule["eventPattern"])
        events.put_targets(Rule="retrain", Targets=[{"Id": "t", "Arn": queue_arn}])
        detail = {"alarmName": "ml-pipeline-test-drift-champion",
                  "state": {"value": state, "reason": 'Threshold Crossed: 1 datapoint [0.9] was > "0.25"'},
                  "previousState": {"value": "OK"}}
        result = events.put_events(Entries=[{"Source": "aws.cloudwatch", "DetailType": "CloudWatch Alarm State Change",
                                             "Resources": [alarm_arn], "Detail": json.dumps(detail)}])
        assert result["FailedEntryCount"] == 0
        delivered = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
    return [transform(event, target["inputTransformer"]) for event in delivered]


def transform(event: dict, transformer: dict) -> dict:
    """EventBridge's input transformer as documented (eb-transform-target-input): a placeholder outside
    quotes in a JSON template takes the value as JSON (strings quoted and escaped). moto inserts the raw
    text instead, so the transformation is applied here."""
    def value(path: str):
        node = event
        for part in path.removeprefix("$.").split("."):
            node = node[part]
        return node
    values = {name: value(path) for name, path in transformer["inputPaths"].items()}
    return json.loads(re.sub(r"<(\w+)>", lambda m: json.dumps(values[m.group(1)]), transformer["inputTemplate"]))


def test_the_drift_alarm_entering_alarm_starts_retraining(full_plan):
    arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:ml-pipeline-test-drift-champion"
    [started] = _route_alarm_event(full_plan, arn, "ALARM")
    assert started["trigger"] == "drift" and started["alarm_name"] == "ml-pipeline-test-drift-champion"
    assert '"0.25"' in started["reason"]
    assert _route_alarm_event(full_plan, arn, "OK") == []
    assert _route_alarm_event(full_plan, arn.replace("drift-champion", "other"), "ALARM") == []
    target = full_plan.one("aws:cloudwatch/eventTarget:EventTarget", "observability-drift-retrain-target").inputs
    assert target["arn"] == full_program.STATE_MACHINE_ARN
    policy = json.loads(full_plan.one("aws:iam/rolePolicy:RolePolicy", "observability-drift-retrain-policy").inputs["policy"])
    assert policy["Statement"] == [{"Effect": "Allow", "Action": ["states:StartExecution"],
                                    "Resource": [full_program.STATE_MACHINE_ARN], "Sid": "StartTraining"}]


def test_without_retrain_on_drift_nothing_starts_the_workflow():
    plan = full_program.plan(retrain_on_drift=False)
    rules = [r.name for r in plan.of_type("aws:cloudwatch/eventRule:EventRule")]
    assert rules == ["observability-drift-schedule"]
    assert not [r for r in plan.of_type("aws:iam/role:Role") if "retrain" in r.name]


def test_the_drift_and_retrain_policies_pass_the_linters(full_plan):
    """parliament, moto's validators and the policy pack's IAM rules on every IAM document the
    observability component makes (its full plan is not among the stack plans the shared checks read)."""
    docs = list(documents_of(full_plan))
    assert {name.split(".")[0].split(":", 1)[1] for name, *_ in docs} >= {
        "observability-drift-fn-policy", "observability-drift-retrain-policy", "observability-drift-dlq-policy",
        "observability-drift-fn-role"}
    found = {name: iam_problems(rtype, kind, field, doc) + rules.wildcard_problems(rtype, kind, doc)
             + (rules.unscoped_problems(doc) if kind == "identity" else [])
             for name, rtype, kind, field, doc in docs}
    assert found == {name: [] for name in found}


def test_the_drift_rules_and_targets_are_valid_eventbridge_requests(full_plan):
    rules = full_plan.of_type("aws:cloudwatch/eventRule:EventRule")
    targets = full_plan.of_type("aws:cloudwatch/eventTarget:EventTarget")
    assert len(rules) == 2 and len(targets) == 2
    found = {r.name: errors("PutRule", put_rule(r.inputs), "events") for r in rules}
    found.update({t.name: errors("PutTargets", put_targets(t.inputs), "events") for t in targets})
    assert found == {name: [] for name in found}
    schedule = full_plan.one("aws:cloudwatch/eventRule:EventRule", "observability-drift-schedule").inputs
    assert schedule["scheduleExpression"] == "rate(60 minutes)"
    broken = put_targets(dict(targets[0].inputs, retryPolicy={"maximumEventAgeInSeconds": 30.0,
                                                              "maximumRetryAttempts": 500.0}))
    assert len(errors("PutTargets", broken, "events")) == 2  # below the minimum age, over the maximum retries
