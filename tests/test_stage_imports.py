"""The packages show the path a row takes: no stage imports a later one (docs/architecture.md).

A sync run goes plan → changes → load → verify (`pipelines.sync`); the adapters (`pipelines.adapters`)
talk to the two databases and know no stage; the record (`pipelines.record`) reads what a
run did and drives none of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

PIPELINES = REPO / "pipelines"

# the sync stages in the order a run goes through them; helpers share their stage's rank
STAGE_RANK = {
    "pipelines.sync.plan": 1,
    "pipelines.sync.rangediff": 1,
    "pipelines.sync.orphans": 1,
    "pipelines.sync.changes": 2,
    "pipelines.sync.load": 3,
    "pipelines.sync.bulk": 3,
    "pipelines.sync.verify": 4,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str) -> set[str]:
    """Every `pipelines…` module a source imports, at any depth (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipelines")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipelines"):
            assert node.module is not None
            found.add(node.module)
            # `from pipelines.sync import changes` imports the module pipelines.sync.changes
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path.read_text())
        for path in PIPELINES.rglob("*.py")
        if "templates" not in path.parts
    }


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            rank, target_rank = STAGE_RANK.get(module), STAGE_RANK.get(target)
            if rank is not None and target_rank is not None and target_rank > rank:
                bad.append(f"{module} imports the later stage {target}")
            if module.startswith("pipelines.adapters") and target.startswith(
                ("pipelines.sync", "pipelines.record")
            ):
                bad.append(f"the adapter {module} imports {target}")
            if module.startswith("pipelines.record") and target.startswith("pipelines.sync"):
                bad.append(f"the record module {module} imports the sync stage {target}")
    return bad


def test_no_stage_imports_a_later_stage() -> None:
    graph = _graph()
    # the walk sees the real edges: the load stage takes the change sets, changes the plans
    assert "pipelines.sync.changes" in graph["pipelines.sync.load"]
    assert "pipelines.sync.plan" in graph["pipelines.sync.changes"]
    assert set(STAGE_RANK) <= set(graph)
    assert _violations(graph) == []


def test_a_backward_import_is_caught() -> None:
    graph = _graph()
    graph["pipelines.sync.plan"] = graph["pipelines.sync.plan"] | {"pipelines.sync.load"}
    graph["pipelines.adapters.kimai"] = graph["pipelines.adapters.kimai"] | {"pipelines.sync.plan"}
    late = _imports("def f():\n    from pipelines.sync import bulk\n")
    assert "pipelines.sync.bulk" in late
    graph["pipelines.sync.changes"] = graph["pipelines.sync.changes"] | late
    assert _violations(graph) == [
        "the adapter pipelines.adapters.kimai imports pipelines.sync.plan",
        "pipelines.sync.changes imports the later stage pipelines.sync.bulk",
        "pipelines.sync.plan imports the later stage pipelines.sync.load",
    ]
