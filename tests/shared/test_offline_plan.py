"""The README's main job: the offline plan command, as a user runs it, and the errors a newcomer meets."""
import json
import subprocess

import pytest

from offline import plan as offline_plan
from offline import runner
from offline.runner import REPO


def _main(capsys, *args):
    """Run the plan's CLI in-process: (exit code, stdout, stderr); argparse errors exit with 2."""
    try:
        code = offline_plan.main(list(args))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def json_plan_via_make():
    """`make plan-json`, the README's command: stdout must be the JSON document alone (pipeable to jq)."""
    result = subprocess.run(["make", "--no-print-directory", "plan-json"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_make_plan_json_prints_only_json_with_both_projects(json_plan_via_make):
    assert [p["project"] for p in json_plan_via_make] == ["gpu-training", "ml-pipeline"]
    assert all(p["error"] is None and p["resources"] for p in json_plan_via_make)


def test_json_numbers_are_integers_and_lambda_code_is_a_folder_with_a_content_hash(json_plan_via_make):
    pipeline = json_plan_via_make[1]
    function = next(r for r in pipeline["resources"] if r["type"] == "aws:lambda/function:Function"
                    and r["name"] == "ingest-fn")
    assert function["inputs"]["memorySize"] == 2048 and isinstance(function["inputs"]["memorySize"], int)
    code = function["inputs"]["code"]
    assert code["archive"] == "functions/image_ingest" and code["files"] >= 1 and len(code["sha256"]) == 16


def test_the_archive_hash_is_stable_between_runs_and_follows_the_content(tmp_path):
    import pulumi
    (tmp_path / "a.py").write_text("x = 1\n")
    first = offline_plan._plain(pulumi.AssetArchive({"a.py": pulumi.FileAsset(str(tmp_path / "a.py"))}))
    again = offline_plan._plain(pulumi.AssetArchive({"a.py": pulumi.FileAsset(str(tmp_path / "a.py"))}))
    (tmp_path / "a.py").write_text("x = 2\n")
    changed = offline_plan._plain(pulumi.AssetArchive({"a.py": pulumi.FileAsset(str(tmp_path / "a.py"))}))
    assert first == again and first["sha256"] != changed["sha256"]
    assert "object at 0x" not in json.dumps(first)


def test_text_plan_groups_resources_under_their_component(pipeline_plan):
    out = offline_plan.render_text(pipeline_plan)
    lines = out.splitlines()
    header = lines.index("  [mlplatform:ingestion:ImageIngestion] ingest")
    # The ingest queue is listed inside the component, indented one level deeper than its header.
    queue = next(i for i, line in enumerate(lines) if line.strip() == "+ aws:sqs/queue:Queue  ingest-queue")
    assert queue > header and lines[queue].startswith("    + ")
    assert "retentionInDays: 30\n" in out and "retentionInDays: 30.0" not in out and "object at 0x" not in out


def test_an_unknown_stack_lists_the_stacks_that_exist(capsys):
    code, _, err = _main(capsys, "--stack", "staging")
    assert code == 2
    assert "has no stack 'staging'" in err and "dev, prod" in err and "Traceback" not in err


@pytest.mark.parametrize("setting, expected", [
    ("gpu_training:targetCapacity=2", "did you mean gpu-training?"),
    ("foo:bar=1", "'foo' is not a project"),
    ("gpu-training:targetCapcity=2", "did you mean gpu-training:targetCapacity?"),
])
def test_set_rejects_unknown_projects_and_keys_with_the_nearest_name(capsys, setting, expected):
    code, _, err = _main(capsys, "--stack", "dev", "--set", setting, "gpu-training")
    assert code == 2 and expected in err


def test_set_rejects_a_key_of_a_project_not_being_planned(capsys):
    code, _, err = _main(capsys, "--stack", "dev", "--set", "ml-pipeline:jpegQuality=80", "gpu-training")
    assert code == 2 and "ml-pipeline is not being planned" in err


def test_any_org_of_the_planned_gpu_training_stack_resolves(gpu_plan, pipeline_plan):
    # The session's pipeline plan references my-org/gpu-training/dev, answered from the planned stack.
    assert pipeline_plan.config["ml-pipeline:gpuTrainingStack"] == "my-org/gpu-training/dev"
    assert pipeline_plan.error is None
    role_arn = gpu_plan.outputs["instance_role_arn"]
    assert role_arn in json.dumps([r.inputs for r in pipeline_plan.resources], default=str)


def test_a_reference_to_a_stack_not_planned_says_how_to_add_it(capsys):
    code, out, _ = _main(capsys, "--stack", "dev", "--set",
                         "ml-pipeline:gpuTrainingStack=my-org/gpu-training/dev", "ml-pipeline")
    assert code == 1
    assert "NOT PLANNED" in out and "resources to create" not in out
    assert "not part of this offline run" in out and "offline.plan --stack dev gpu-training ml-pipeline" in out


@pytest.mark.parametrize("project, key, value, expected", [
    ("gpu-training", "gpu-training:owner", "", "config gpu-training:owner: must be 1 to 256 characters"),
    ("gpu-training", "gpu-training:costCenter", "", "config gpu-training:costCenter: must be 1 to 256"),
    ("ml-pipeline", "ml-pipeline:owner", "", "config ml-pipeline:owner: must be 1 to 256 characters"),
    ("ml-pipeline", "aws:region", "mars-1", "config aws:region: must be an AWS region"),
    ("ml-pipeline", "ml-pipeline:dataClassification", "secret", "config ml-pipeline:dataClassification: must be"),
    ("gpu-training", "gpu-training:checkpointHook", "x" * 32000, "config gpu-training:checkpointHook: must be"),
    ("gpu-training", "gpu-training:hparamsPrefix", "/ml/bad prefix", "config gpu-training:hparamsPrefix: must be"),
    ("gpu-training", "gpu-training:hparamsPrefix", "/ml//hparams", "config gpu-training:hparamsPrefix: must be"),
    ("gpu-training", "gpu-training:hparamsPrefix", "/l" * 15, "config gpu-training:hparamsPrefix: must be"),
    ("ml-pipeline", "ml-pipeline:artifactsBucketName", "ab", "config ml-pipeline:artifactsBucketName: 'ab' is not"),
    ("ml-pipeline", "ml-pipeline:alarmEmails", json.dumps([f"ops{i}@example.com" for i in range(11)]),
     "config ml-pipeline:alarmEmails, ml-pipeline:monthlyBudgetUsd: alarmEmails may list at most 10"),
])
def test_config_errors_name_the_key_and_the_command_that_sets_it(projects, project, key, value, expected):
    result = runner.run(projects[project], "dev", config_overrides={key: value}, raise_errors=False)
    assert result.error is not None and expected in result.error, result.error
    command = "pulumi -C gpu_training config set" if project == "gpu-training" else "pulumi config set"
    assert f"`{command} " in result.error and len(result.error) < 600  # the cause, not the value or a chain
    assert "Output" not in result.error and "\n" not in result.error


def test_a_failed_program_is_reported_not_counted(capsys):
    code, out, _ = _main(capsys, "--stack", "dev", "--set", "gpu-training:targetCapacity=0", "gpu-training")
    assert code == 1
    assert "gpu-training / dev: NOT PLANNED" in out and "resources to create" not in out
    assert "gpu-training:targetCapacity" in out
