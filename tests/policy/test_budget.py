"""shared/budget.py under mocks: one monthly COST budget per stack on its Stack cost-allocation tag, a
forecast alert and an actual alert to the e-mail subscribers; values checked against the Budgets API model."""
from __future__ import annotations

import pytest

from offline import runner
from shared.budget import StackBudget, StackBudgetArgs, tag_filter_value
from shared.tagging import StackTags
from tests.botocore_models import service_model

BUDGET = "aws:budgets/budget:Budget"
TAGS = StackTags(project="ml-pipeline", stack="prod", environment="prod", owner="ml-platform", cost_center="cc-1")


@pytest.fixture(scope="module")
def built():
    plan = runner.run_callable(lambda: StackBudget("budget", StackBudgetArgs(
        budget_name="ml-pipeline-prod-monthly", monthly_usd=7500.0, tags=TAGS,
        emails=("a@example.com", "b@example.com"), actual_alert_percent=80.0)))
    return plan.one(BUDGET, "budget").inputs


def test_a_monthly_cost_budget_on_the_stack_tag(built):
    assert built["budgetType"] == "COST" and built["timeUnit"] == "MONTHLY"
    assert built["limitAmount"] == "7500.00" and built["limitUnit"] == "USD"
    assert built["name"] == "ml-pipeline-prod-monthly"
    assert built["costFilters"] == [{"name": "TagKeyValue", "values": ["user:Stack$ml-pipeline/prod"]}]


def test_a_forecast_alert_over_100_percent_and_an_actual_alert_at_the_threshold(built):
    alerts = {n["notificationType"]: n for n in built["notifications"]}
    assert set(alerts) == {"FORECASTED", "ACTUAL"}
    assert alerts["FORECASTED"]["threshold"] == 100.0 and alerts["ACTUAL"]["threshold"] == 80.0
    for n in alerts.values():
        assert n["comparisonOperator"] == "GREATER_THAN" and n["thresholdType"] == "PERCENTAGE"
        assert n["subscriberEmailAddresses"] == ["a@example.com", "b@example.com"]
        assert "subscriberSnsTopicArns" not in n


def test_the_values_are_ones_the_budgets_api_accepts(built):
    model = service_model("budgets")
    enum = lambda shape: model.shape_for(shape).enum  # noqa: E731
    assert built["budgetType"] in enum("BudgetType") and built["timeUnit"] in enum("TimeUnit")
    for n in built["notifications"]:
        assert n["notificationType"] in enum("NotificationType")
        assert n["comparisonOperator"] in enum("ComparisonOperator")
        assert n["thresholdType"] in enum("ThresholdType")
        assert len(n["subscriberEmailAddresses"]) <= 10
    assert len(built["name"]) <= model.shape_for("BudgetName").metadata["max"]


def test_without_subscribers_the_budget_tracks_but_sends_nothing():
    plan = runner.run_callable(lambda: StackBudget("budget", StackBudgetArgs(
        budget_name="x-dev-monthly", monthly_usd=10.0, tags=TAGS)))
    assert not plan.one(BUDGET, "budget").inputs.get("notifications")
    assert any("no e-mail subscribers" in w for w in plan.warnings)


@pytest.mark.parametrize("change, message", [
    ({"monthly_usd": 0.0}, "monthly_usd"),
    ({"emails": tuple(f"u{i}@example.com" for i in range(11))}, "at most 10"),
    ({"emails": ("not-an-address",)}, "e-mail"),
    ({"actual_alert_percent": 0.0}, "actual_alert_percent"),
    ({"budget_name": "a:b"}, "budget_name"),
    ({"tags": StackTags("ml-pipeline", "prod", "ml-platform", "cc-1")}, "tags.stack"),
])
def test_bad_arguments_fail_naming_the_field(change, message):
    args = {"budget_name": "x", "monthly_usd": 10.0, "tags": TAGS, **change}
    with pytest.raises(ValueError, match=message):
        StackBudgetArgs(**args)


def test_the_tag_filter_spelling():
    assert tag_filter_value("Project", "gpu-training") == "user:Project$gpu-training"


@pytest.mark.parametrize("fixture, key", [("gpu_plan", "gpu-training:monthlyBudgetUsd"),
                                          ("pipeline_plan", "ml-pipeline:monthlyBudgetUsd")])
def test_each_stack_has_its_budget_from_config(fixture, key, request):
    plan = request.getfixturevalue(fixture)
    budget = plan.one(BUDGET, "budget")
    assert budget.inputs["limitAmount"] == f"{float(plan.config[key]):.2f}"
    # dev and prod of one project in one account: each budget counts only its own stack's resources.
    assert budget.inputs["costFilters"][0]["values"] == [tag_filter_value("Stack", f"{plan.project}/{plan.stack}")]
    assert budget.inputs["tags"]["Stack"] == f"{plan.project}/{plan.stack}"
    assert budget.inputs["name"] == f"{plan.project}-{plan.stack}-monthly"


def _settings(config: dict):
    import pulumi

    from shared.budget import load_settings
    from shared.config_reader import ConfigReader
    found = []
    plan = runner.run_callable(lambda: found.append(load_settings(ConfigReader(pulumi.Config()), ())), "proj",
                               config={f"proj:{k}": v for k, v in config.items()}, raise_errors=False)
    return found[0] if found else plan.error


def test_budget_config_keys_are_read_and_checked():
    assert _settings({}).monthly_usd == 0.0  # no key: no budget
    settings = _settings({"monthlyBudgetUsd": "1200", "budgetAlertPercent": "90"})
    assert (settings.monthly_usd, settings.actual_alert_percent) == (1200.0, 90.0)
    assert "monthlyBudgetUsd" in _settings({"monthlyBudgetUsd": "-5"})
    assert "budgetAlertPercent" in _settings({"budgetAlertPercent": "0"})
