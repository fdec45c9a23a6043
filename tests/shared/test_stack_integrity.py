"""Properties every resource of both stacks must have: tags, unique URNs, real archive paths, parents."""
import importlib
import inspect
from pathlib import Path

import pulumi

from shared.contracts import GPU_TRAINING_EXPORTS
from shared.tagging import REQUIRED_TAG_KEYS


def _pulumi_class(type_token: str):
    """pulumi_aws class of a type token such as aws:lambda/function:Function."""
    module, _, rest = type_token.split(":", 1)[1].partition("/")
    module = {"lambda": "lambda_", "index": ""}.get(module, module)
    mod = importlib.import_module(f"pulumi_aws.{module}" if module else "pulumi_aws")
    return getattr(mod, rest.split(":")[-1])


def _taggable(type_token: str) -> bool:
    return "tags" in inspect.signature(_pulumi_class(type_token)._internal_init).parameters


def test_every_taggable_resource_carries_the_stack_tags(plans):
    checked = 0
    for plan in plans:
        env = plan.stack
        for r in plan.resources:
            if not _taggable(r.type):
                continue
            tags = r.inputs.get("tags") or {}
            missing = [k for k in REQUIRED_TAG_KEYS if not tags.get(k)]
            assert not missing, f"{plan.project}:{r.type} {r.name} lacks tags {missing}"
            assert tags["Project"] == plan.project and tags["Environment"] == env and tags["ManagedBy"] == "pulumi"
            checked += 1
    assert checked > 40


def test_the_tags_of_one_stack_do_not_leak_into_the_other(gpu_plan, pipeline_plan):
    assert {r.inputs["tags"]["Project"] for r in gpu_plan.resources if r.inputs.get("tags")} == {"gpu-training"}
    assert {r.inputs["tags"]["Project"] for r in pipeline_plan.resources if r.inputs.get("tags")} == {"ml-pipeline"}


def test_a_resource_name_tag_set_by_a_component_survives_the_stack_tags(gpu_plan):
    vpc = gpu_plan.one("aws:ec2/vpc:Vpc", "network-vpc")
    assert vpc.inputs["tags"]["Name"] == "gpu-training-dev-vpc"
    assert vpc.inputs["tags"]["Owner"] == "ml-platform"


def test_every_urn_is_unique(plans):
    for plan in plans:
        urns = [r.urn for r in plan.resources]
        assert all(urns), "a recorded resource has no URN"
        assert len(urns) == len(set(urns)), sorted(u for u in urns if urns.count(u) > 1)


def test_every_archive_path_exists(plans):
    archives = []
    for plan in plans:
        for r in plan.resources:
            code = r.inputs.get("code")
            if isinstance(code, pulumi.FileArchive):
                archives.append(Path(code.path))
            elif isinstance(code, pulumi.AssetArchive):
                archives.extend(Path(asset.path) for asset in code.assets.values())
    assert archives, "no archive found: the plan changed shape"
    for path in archives:
        assert path.exists(), path


# Resources a program creates outside any component, on purpose (each is used by several components or
# is one resource that needs no component). Anything else at top level is a component that lost its parent.
TOP_LEVEL_RESOURCES = {
    "gpu-training": {"training-logs", "system-logs"},
    "ml-pipeline": {"image-layer"},
}


def test_resources_sit_in_components_except_a_deliberate_few(plans):
    for plan in plans:
        stack_urn = next(u for u in {r.parent for r in plan.resources} if u.endswith("::pulumi:pulumi:Stack::"
                                                                                    + f"{plan.project}-{plan.stack}"))
        components = {u for u, reg in plan.registrations.items() if not reg["custom"]}
        top_level = {r.name for r in plan.resources if r.parent == stack_urn}
        assert top_level == TOP_LEVEL_RESOURCES[plan.project], plan.project
        # Every other parent is a component of this plan: never a plain resource, never a dangling URN.
        assert {r.parent for r in plan.resources} - {stack_urn} <= components


def test_gpu_training_exports_exactly_its_contract(gpu_plan):
    assert set(gpu_plan.outputs) == set(GPU_TRAINING_EXPORTS)
    assert all(v not in (None, "", []) for v in gpu_plan.outputs.values())
    assert len(gpu_plan.outputs["private_subnet_ids"]) == 3


def test_the_pipeline_reads_the_gpu_training_contract_through_its_stack_reference(gpu_plan, pipeline_plan):
    refs = [r for r in pipeline_plan.registrations.values() if r["type"] == "pulumi:pulumi:StackReference"]
    assert refs, "the pipeline made no StackReference"
    role = gpu_plan.outputs["instance_role_arn"]
    key_policy = next(r.inputs["policy"] for r in pipeline_plan.resources
                      if r.type == "aws:kms/key:Key" and r.name == "data-key-key")
    assert role in key_policy
    processed_policy = pipeline_plan.one("aws:s3/bucketPolicy:BucketPolicy", "lake-processed-policy").inputs["policy"]
    assert role in processed_policy


def test_prod_stack_files_run_too(prod_plans):
    for plan in prod_plans:
        assert plan.error is None and len(plan.resources) > 40, plan.project


def test_prod_stacks_agree_on_the_cross_stack_bucket(prod_plans):
    """The pipeline's prod grant is only usable if gpu-training's prod network and role let the reads out."""
    gpu, pipeline = prod_plans
    processed = pipeline.outputs["processed_bucket_name"]
    endpoint = gpu.one("aws:ec2/vpcEndpoint:VpcEndpoint", "network-s3").inputs["policy"]
    role = gpu.one("aws:iam/rolePolicy:RolePolicy", "instance-policy").inputs["policy"]
    assert f"arn:aws:s3:::{processed}/*" in endpoint and f"arn:aws:s3:::{processed}/*" in role
    assert gpu.outputs["instance_role_arn"] in pipeline.one("aws:s3/bucketPolicy:BucketPolicy", "lake-processed-policy").inputs["policy"]
