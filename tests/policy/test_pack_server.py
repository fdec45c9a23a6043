"""The pack as the Pulumi engine meets it: policy/__main__.py started as its own process, spoken to over the
analyzer gRPC protocol with resources from the recorded plans (the CLI is not installed here)."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import rules

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def analyzer():
    proc = subprocess.Popen([sys.executable, str(REPO / "policy" / "__main__.py")], cwd=REPO / "policy",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline().strip() or 0)
        assert port, proc.stderr.read().decode()[-2000:]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _struct(props: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(props, struct_pb2.Struct())


def _analyze(analyzer, resource, props=None):
    request = analyzer_pb2.AnalyzeRequest(type=resource.type, name=resource.name, urn=resource.urn,
                                          properties=_struct(props if props is not None else resource.inputs))
    return analyzer.Analyze(request, timeout=30)


def test_the_served_pack_lists_every_policy_as_mandatory(analyzer):
    from google.protobuf import empty_pb2
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "mlplatform-compliance"
    assert [p.name for p in info.policies] == list(rules.POLICY_NAMES)
    assert {analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel) for p in info.policies} == {"MANDATORY"}


def test_a_recorded_resource_passes_and_its_broken_copy_fails_over_grpc(analyzer, pipeline_plan):
    queue = pipeline_plan.one(rules.QUEUE, "ingest-queue")
    assert list(_analyze(analyzer, queue).diagnostics) == []
    broken = copy.deepcopy(queue.inputs)
    broken.pop("kmsMasterKeyId")
    [diagnostic] = _analyze(analyzer, queue, broken).diagnostics
    assert diagnostic.policyName == "encryption-at-rest-customer-key"
    assert analyzer_pb2.EnforcementLevel.Name(diagnostic.enforcementLevel) == "MANDATORY"


def test_the_stack_policies_run_over_grpc(analyzer, gpu_plan):
    def request(resources):
        return analyzer_pb2.AnalyzeStackRequest(resources=[
            analyzer_pb2.AnalyzerResource(type=r.type, name=r.name, urn=r.urn, parent=r.parent,
                                          dependencies=r.dependencies,
                                          properties=_struct({k: v for k, v in {**r.inputs, **r.state}.items() if k != "id"}))
            for r in resources])
    assert list(analyzer.AnalyzeStack(request(gpu_plan.resources), timeout=30).diagnostics) == []
    without_block = [r for r in gpu_plan.resources if r.type != rules.PUBLIC_ACCESS_BLOCK]
    found = analyzer.AnalyzeStack(request(without_block), timeout=30).diagnostics
    assert {d.policyName for d in found} == {"no-public-access"} and len(found) == 2  # both buckets


def test_the_pack_project_file_points_the_python_runtime_at_the_repository_venv():
    # PulumiPolicy.yaml reference (pulumi/docs content/docs/insights/policy/policy-packs/project-file.md): the Python
    # runtime's option for the environment is `virtualenv`, a path relative to the pack; `version` is read from here.
    import yaml
    project = yaml.safe_load((REPO / "policy" / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python" and set(project["runtime"]["options"]) <= {"virtualenv", "toolchain"}
    assert (REPO / "policy" / project["runtime"]["options"]["virtualenv"]).resolve() == (REPO / ".venv").resolve()
    # `make venv` (what `pulumi up` runs with) installs requirements.txt only: the pack's SDK must be in it.
    assert any(line.startswith("pulumi-policy==") for line in (REPO / "requirements.txt").read_text().splitlines())
    assert [int(part) for part in project["version"].split(".")] and len(project["version"].split(".")) == 3
