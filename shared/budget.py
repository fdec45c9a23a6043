"""An AWS Budgets cost budget for one stack, with a forecast alert and an actual-spend alert (issue 11).

The budget counts the cost of resources tagged with the stack's own ``Stack`` tag (``<project>/<stack>``,
shared/tagging.py), so dev and prod of one project in one account each have their own budget (cost filter
``TagKeyValue``, values spelled ``user:<Key>$<Value>``; one filter ORs its values, so a filter on Project and
Environment together would not single a stack out). What AWS needs besides this resource: the ``Stack`` tag
must be activated as a cost-allocation tag in the Billing console (Billing > Cost allocation tags, once per
payer account, up to 24 hours after the tag first appears; cost is attributed from activation on, not
retroactively), and untaggable charges (data transfer, some request fees) are not counted. The alerts go to
e-mail subscribers directly. Not SNS: the stacks' alarm topics are encrypted with customer managed keys, which
AWS Budgets can publish to only if the key policy grants ``budgets.amazonaws.com`` kms:GenerateDataKey*/kms:Decrypt
and the topic policy grants it sns:Publish; e-mail needs neither, and a budget alert is a human's job anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from shared.config_reader import ConfigReader
from shared.tagging import StackTags

MAX_EMAIL_SUBSCRIBERS = 10  # AWS Budgets: up to 10 e-mail subscribers per notification


@dataclass(frozen=True)
class BudgetSettings:
    """``monthly_usd`` 0 means the stack has no budget."""

    monthly_usd: float
    actual_alert_percent: float


def load_settings(reader: ConfigReader, alarm_emails: Sequence[str]) -> BudgetSettings:
    """``alarm_emails`` are the budget's alert subscribers too (AWS Budgets takes at most 10 per alert)."""
    settings = BudgetSettings(
        monthly_usd=reader.number("monthlyBudgetUsd", 0.0, minimum=0.0, maximum=10_000_000.0),
        actual_alert_percent=reader.number("budgetAlertPercent", 80.0, minimum=1.0, maximum=1000.0),
    )
    reader.require(settings.monthly_usd == 0 or len(alarm_emails) <= MAX_EMAIL_SUBSCRIBERS, ["alarmEmails", "monthlyBudgetUsd"],
                   f"alarmEmails may list at most {MAX_EMAIL_SUBSCRIBERS} addresses when monthlyBudgetUsd sets a budget "
                   "(they are its alert subscribers)", f"{len(alarm_emails)}")
    return settings


@dataclass(frozen=True)
class StackBudgetArgs:
    budget_name: str
    monthly_usd: float
    tags: StackTags
    emails: Sequence[str] = field(default_factory=tuple)
    actual_alert_percent: float = 80.0
    forecast_alert_percent: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.monthly_usd <= 10_000_000:
            raise ValueError(f"StackBudgetArgs.monthly_usd must be in (0, 10000000], got {self.monthly_usd}")
        for name in ("actual_alert_percent", "forecast_alert_percent"):
            if not 0 < getattr(self, name) <= 1000:
                raise ValueError(f"StackBudgetArgs.{name} must be in (0, 1000], got {getattr(self, name)}")
        if len(self.emails) > MAX_EMAIL_SUBSCRIBERS:
            raise ValueError(f"StackBudgetArgs.emails: AWS Budgets takes at most {MAX_EMAIL_SUBSCRIBERS} e-mail "
                             f"subscribers per alert, got {len(self.emails)}")
        if not self.tags.stack:
            raise ValueError("StackBudgetArgs.tags.stack is required: the budget filters on the Stack tag")
        bad = [e for e in self.emails if "@" not in e]
        if bad:
            raise ValueError(f"StackBudgetArgs.emails must be e-mail addresses, got {bad}")
        if not 1 <= len(self.budget_name) <= 100 or any(c in self.budget_name for c in ":\\"):
            raise ValueError(f"StackBudgetArgs.budget_name must be 1-100 characters without ':' or '\\', "
                             f"got {self.budget_name!r}")


def tag_filter_value(key: str, value: str) -> str:
    """A ``TagKeyValue`` cost-filter value for a user-defined (cost-allocation) tag."""
    return f"user:{key}${value}"


class StackBudget(pulumi.ComponentResource):
    budget: aws.budgets.Budget

    def __init__(self, name: str, args: StackBudgetArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlplatform:monitoring:StackBudget", name, None, opts)
        emails = list(args.emails)
        notifications = [
            aws.budgets.BudgetNotificationArgs(
                notification_type=kind, comparison_operator="GREATER_THAN", threshold=percent,
                threshold_type="PERCENTAGE", subscriber_email_addresses=emails)
            for kind, percent in (("FORECASTED", args.forecast_alert_percent), ("ACTUAL", args.actual_alert_percent))
        ] if emails else []
        if not emails:
            # A notification needs a subscriber: without one the budget tracks cost but tells no one.
            pulumi.log.warn(f"budget {args.budget_name}: no e-mail subscribers (alarmEmails), so no alerts are sent")
        self.budget = aws.budgets.Budget(
            name,
            name=args.budget_name,
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.monthly_usd:.2f}",
            limit_unit="USD",
            cost_filters=[aws.budgets.BudgetCostFilterArgs(
                name="TagKeyValue", values=[tag_filter_value("Stack", args.tags.stack_tag)])],
            notifications=notifications,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"budget_name": self.budget.name})
