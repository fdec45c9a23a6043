"""The platform's CrossGuard policy pack: `pulumi preview --policy-pack policy` (run from the root
project or `-C gpu_training ... --policy-pack ../policy`). The rules live in policy/rules.py so the tests
can run them without this server."""
import sys
from pathlib import Path

# The pack runs with policy/ as its working directory: the repository root holds `policy` and `shared`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi_policy import PolicyPack  # noqa: E402

from policy.rules import POLICIES  # noqa: E402

PolicyPack(name="mlplatform-compliance", policies=POLICIES)
