"""A non-editable install (`pip install .`, a KubeRay image) carries the data the service reads at run
time: the wheel holds the router head and the search corpus, and code imported from an unpacked wheel,
away from the checkout, finds both inside that copy."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from vocabulary.paths import ROUTER_HEADS, SEARCH_CORPUS, config_path

ROOT = Path(__file__).resolve().parents[2]


def shipped_files(reference: str) -> list[str]:
    """The data files of a `package:` folder in the checkout, as paths inside the wheel."""
    folder = config_path(reference)
    package_root = folder.parent
    return sorted(p.relative_to(package_root.parent).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built without network from a copy of its sources (the checkout is left as it
    is: no build/ or egg-info written there)."""
    source = tmp_path_factory.mktemp("source")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("switchboard-*.whl")
    return built


def test_the_wheel_holds_the_router_head_and_the_corpus(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    heads, corpus = shipped_files(ROUTER_HEADS), shipped_files(SEARCH_CORPUS)
    assert "intent_router/head_artifacts/LATEST" in heads and any(n.endswith(".json") for n in heads)
    assert "deployments/search_corpus/operations.md" in corpus
    assert set(heads) <= names and set(corpus) <= names, sorted(set(heads + corpus) - names)


PROBE = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__name__", "").lower()]
from deployments.search import LocalSearchEngine
from intent_router.head import Head, latest_path
from vocabulary.backend_specs import LocalSearchBackend
from vocabulary.paths import config_path
from vocabulary.router_config import EmbeddingClassifierSpec
import vocabulary

head_path = latest_path(config_path(EmbeddingClassifierSpec(kind="embedding").artifact_dir))
engine = LocalSearchEngine(LocalSearchBackend(kind="bm25"))
asyncio.run(engine.start())
hits = asyncio.run(engine.search("token authentication", 3, 5.0))
print(json.dumps({"vocabulary": vocabulary.__file__, "head": str(head_path), "version": Head.read(head_path).version,
                  "corpus": str(config_path(LocalSearchBackend(kind="bm25").folder)), "hits": hits}))
"""


def test_an_unpacked_wheel_finds_its_own_head_and_corpus(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "cwd"  # neither the checkout nor the unpacked copy
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", PROBE, str(site)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["vocabulary"]).is_relative_to(site)
    assert Path(found["head"]).is_relative_to(site / "intent_router" / "head_artifacts")
    assert Path(found["head"]).is_file() and found["version"] >= 1
    assert Path(found["corpus"]) == site / "deployments" / "search_corpus"
    assert found["hits"] and found["hits"][0]["url"].startswith("search_corpus/")
