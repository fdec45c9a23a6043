"""The README's config limits are generated from the checks the programs run, and every key is documented."""
import re

from offline import config_docs


def _block(text: str, project: str) -> str:
    blocks = {m.group("project"): m.group("body") for m in config_docs._BLOCK.finditer(text)}
    assert project in blocks, f"README has no config-limits block for {project}"
    return blocks[project]


def test_the_readme_limits_are_what_the_programs_check_now(gpu_plan, pipeline_plan):
    text = config_docs.README.read_text()
    for plan in (gpu_plan, pipeline_plan):
        assert _block(text, plan.project) == config_docs.table(plan.keys_read), (
            f"{plan.project}: README limits are stale; run .venv/bin/python -m offline.config_docs --write")


def test_every_key_a_program_reads_is_explained_in_the_readme(gpu_plan, pipeline_plan):
    # The hand-written tables (key, default, meaning) outside the generated blocks.
    prose = config_docs._BLOCK.sub("", config_docs.README.read_text())
    for plan in (gpu_plan, pipeline_plan):
        keys = {k.split(":", 1)[1] for k, spec in plan.keys_read.items()
                if spec.kind != "rule" and not k.startswith("aws:")}
        assert len(keys) > 20, plan.project
        missing = sorted(k for k in keys if not re.search(rf"`{re.escape(k)}`", prose))
        assert missing == [], f"{plan.project} reads keys the README does not explain: {missing}"


def test_a_rule_between_keys_is_listed_with_every_key_it_names(pipeline_plan):
    table = config_docs.table(pipeline_plan.keys_read)
    assert ("`ml-pipeline:rawGlacierDays`, `ml-pipeline:rawInfrequentAccessDays`: rawGlacierDays must be at least "
            "rawInfrequentAccessDays + 30") in table


def test_the_readme_cost_tables_are_the_plans_estimates_now(gpu_plan, pipeline_plan_as_filed):
    blocks = {m.group("project"): m.group("body") for m in config_docs._COST_BLOCK.finditer(config_docs.README.read_text())}
    for plan in (gpu_plan, pipeline_plan_as_filed):
        assert blocks.get(plan.project) == config_docs.cost_table(plan), (
            f"{plan.project}: README cost table is stale; run .venv/bin/python -m offline.config_docs --write")
