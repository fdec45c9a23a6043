"""Observability: dashboards, alarms and drift detection of the ml-pipeline stack (issue 11)."""
