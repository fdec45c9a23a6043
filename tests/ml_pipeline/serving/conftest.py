"""The least-privilege check (tests/ml_pipeline/observability/test_least_privilege.py) reads the AWS calls
the serving functions make in this folder's tests; the folder sorts after observability, so its tests
run last in the session (the check skips a role whose calls were not recorded yet)."""
from __future__ import annotations

LEAST_PRIVILEGE = "tests/ml_pipeline/observability/test_least_privilege.py"


def pytest_collection_modifyitems(session, config, items):
    checks = [item for item in items if item.nodeid.startswith(LEAST_PRIVILEGE)]
    if checks:
        items[:] = [item for item in items if not item.nodeid.startswith(LEAST_PRIVILEGE)] + checks
