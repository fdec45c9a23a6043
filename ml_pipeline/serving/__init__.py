"""Serving: the deployment workflow, A/B tests and the inference API (issue 10)."""
