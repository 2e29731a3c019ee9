"""Arrows point one way: the shared vocabulary imports no package of ours but itself; graphs never
import Ray, FastAPI, the app or the deployments; no deployment imports the app; and of the app,
only the builder (the composition root) imports deployments."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"serve_app", "deployments", "graphs", "vocabulary", "intent_router"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):  # lazy imports inside functions count too
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    """The package's own modules (not loadtests/results/, where a benchmark keeps LiteLLM's venv)."""
    results = ROOT / "loadtests" / "results"
    return sorted(p for p in (ROOT / package).rglob("*.py") if results not in p.parents)


@pytest.mark.parametrize("package,allowed", [
    ("vocabulary", {"vocabulary"}),
    ("graphs", {"graphs", "vocabulary"}),
    ("intent_router", {"intent_router", "graphs", "vocabulary"}),
    ("deployments", {"deployments", "intent_router", "vocabulary"}),
])
def test_package_imports_only_what_it_may(package, allowed):
    wrong = {f"{p.relative_to(ROOT)} imports {m}" for p in modules(package) for m in imports_of(p) & OURS - allowed}
    assert not wrong, sorted(wrong)


def test_graphs_never_import_ray_or_fastapi():
    wrong = {str(p.relative_to(ROOT)) for p in modules("graphs") if imports_of(p) & {"ray", "fastapi", "starlette"}}
    assert not wrong, sorted(wrong)


def test_only_the_builder_imports_deployments():
    importers = {str(p.relative_to(ROOT)) for p in modules("serve_app") if "deployments" in imports_of(p)}
    assert importers <= {"serve_app/builder.py"}, sorted(importers)


def test_one_copy_of_the_shared_maps():
    """The route/family maps, the intents and the project root are defined once, in vocabulary."""
    names = {"INTENTS", "ROUTE_FAMILY", "FAMILY_ROUTE", "FAMILY_INTENT", "OPENAI_MODEL_FAMILIES", "PROJECT_ROOT"}
    where: dict[str, list[str]] = {}
    for package in OURS | {"loadtests"}:
        for path in modules(package):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign) else []
                for t in targets:
                    if isinstance(t, ast.Name) and t.id in names:
                        where.setdefault(t.id, []).append(str(path.relative_to(ROOT)))
    assert all(len(files) == 1 and files[0].startswith("vocabulary/") for files in where.values()), where
    assert set(where) == names
