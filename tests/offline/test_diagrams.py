"""docs/diagrams/ is what tools/diagram.py draws from this session's plans: regenerate after a change to
either stack with `python tools/diagram.py` (needs Graphviz for the SVG; this test does not)."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("diagram_tool", REPO / "tools" / "diagram.py")
diagram = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagram)


@pytest.mark.parametrize("fixture", ["gpu_plan", "pipeline_plan"])
def test_the_committed_diagram_is_the_plan_drawn_now(fixture, request):
    plan = request.getfixturevalue(fixture)
    text = diagram.dot_text(plan)
    dot_path = REPO / "docs" / "diagrams" / f"{plan.project}.dot"
    assert dot_path.read_text() == text, "stale: run python tools/diagram.py"
    svg = (REPO / "docs" / "diagrams" / f"{plan.project}.svg").read_text()
    assert diagram.svg_hash(svg) == diagram.dot_hash(text), "SVG not rendered from this DOT: run python tools/diagram.py"


def test_every_resource_is_drawn_once_inside_its_component(pipeline_plan):
    text = diagram.dot_text(pipeline_plan)
    for r in pipeline_plan.resources:
        assert text.count(f'"{r.urn}" [label=') == 1, r.urn
    fn = pipeline_plan.one("aws:lambda/function:Function", "ingest-fn")
    # the function sits in its PythonFunction's cluster, which sits in the ImageIngestion cluster
    cluster = text.index(f'subgraph "cluster_{fn.parent}"')
    assert text.index('subgraph "cluster_urn:pulumi:dev::ml-pipeline::pulumi:pulumi:Stack$mlplatform:ingestion:ImageIngestion::ingest"') \
        < cluster < text.index(f'"{fn.urn}" [label=')
