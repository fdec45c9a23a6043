"""Load the instance-side scripts (gpu_training/instance/*.py) as modules, the way they run on EC2:
from their own folder, so `import mlp_common` resolves to the file beside them."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

INSTANCE_DIR = Path(__file__).resolve().parents[3] / "gpu_training" / "instance"
FAKES_DIR = Path(__file__).resolve().parent


def load_instance_module(name: str):
    if str(INSTANCE_DIR) not in sys.path:
        sys.path.insert(0, str(INSTANCE_DIR))
    spec = importlib.util.spec_from_file_location(f"mlp_instance_{name}", INSTANCE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_fake(name: str):
    spec = importlib.util.spec_from_file_location(f"mlp_fake_{name}", FAKES_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
