"""The README's main job: the offline plan command, as a user runs it."""
import json
import subprocess
import sys

from offline.runner import REPO


def _plan(*args):
    return subprocess.run([sys.executable, "-m", "offline.plan", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_the_plan_prints_both_projects_resources_and_outputs():
    result = _plan("--stack", "dev")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== gpu-training / dev:" in out and "== ml-pipeline / dev:" in out
    assert "aws:ec2/fleet:Fleet  gpu-fleet" in out and "aws:lambda/function:Function  ingest-fn" in out
    assert "fleet_id:" in out and "raw_bucket_name:" in out


def test_the_json_plan_is_machine_readable_and_a_config_error_names_the_key():
    result = _plan("--stack", "dev", "--json", "--set", "gpu-training:targetCapacity=0", "gpu-training")
    assert result.returncode == 1
    (plan,) = json.loads(result.stdout)
    assert plan["project"] == "gpu-training" and plan["resources"] == []
    assert "gpu-training:targetCapacity" in plan["error"]
