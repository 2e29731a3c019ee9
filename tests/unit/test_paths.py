"""The one rule for paths in a config (vocabulary/paths.py): `package:NAME/PATH` inside an installed
package, an absolute path as given, a relative path relative to the working directory; and the defaults
and the shipped configs name the router head and the search corpus in the package form."""

import sysconfig
from pathlib import Path

import pytest
from pydantic import ValidationError

from intent_router.head import latest_path
from serve_app.config_file import load_serve_config
from vocabulary.backend_specs import LocalSearchBackend
from vocabulary.errors import ConfigError
from vocabulary.paths import ROUTER_HEADS, SEARCH_CORPUS, config_path, in_site_packages
from vocabulary.router_config import EmbeddingClassifierSpec, RouterSpec

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_form_is_inside_the_imported_package():
    import deployments
    import intent_router

    heads = config_path(ROUTER_HEADS)
    assert heads == Path(intent_router.__file__).parent / "head_artifacts"
    assert latest_path(heads).is_file()
    corpus = config_path(SEARCH_CORPUS)
    assert corpus == Path(deployments.__file__).parent / "search_corpus"
    assert (corpus / "operations.md").is_file()


def test_the_package_form_takes_dotted_names_and_the_package_itself():
    import email.mime
    import intent_router

    assert config_path("package:email.mime/text.py") == Path(email.mime.__file__).parent / "text.py"
    assert config_path("package:intent_router") == Path(intent_router.__file__).parent


def test_a_package_that_is_not_installed_is_a_config_error():
    with pytest.raises(ConfigError, match="'no_such_package_here' is not installed"):
        config_path("package:no_such_package_here/heads")
    with pytest.raises(ConfigError, match="'json.decoder' is not a package"):
        config_path("package:json.decoder/heads")
    with pytest.raises(ConfigError, match="package:NAME/PATH"):  # given on the command line, unvalidated
        config_path("package:intent_router/../serve_app")


@pytest.mark.parametrize("bad", ["package:", "package:/heads", "package:1abc/heads", "package:intent_router/../x",
                                 "package:intent_router//x", "package:intent-router/x"])
def test_a_malformed_package_form_fails_validation(bad):
    with pytest.raises(ValidationError, match="package:NAME/PATH"):
        EmbeddingClassifierSpec(kind="embedding", artifact_dir=bad)
    with pytest.raises(ValidationError, match="package:NAME/PATH"):
        LocalSearchBackend(kind="bm25", folder=bad)


def test_an_absolute_path_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert config_path(str(tmp_path / "heads")) == tmp_path / "heads"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path("~/heads") == tmp_path / "heads"


def test_a_relative_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path("logs/requests") == tmp_path.resolve() / "logs/requests"
    assert config_path(Path("docs")) == tmp_path.resolve() / "docs"


def test_the_defaults_name_the_shipped_head_and_corpus():
    assert EmbeddingClassifierSpec(kind="embedding").artifact_dir == ROUTER_HEADS
    assert RouterSpec().classifier.artifact_dir == ROUTER_HEADS
    assert LocalSearchBackend(kind="bm25").folder == SEARCH_CORPUS


@pytest.mark.parametrize("name", ["local.yaml", "gpu.yaml", "gpu-upstream.yaml"])
def test_the_shipped_configs_find_the_head_and_the_corpus_from_anywhere(name, tmp_path, monkeypatch):
    """Resolved from a folder that is not the checkout: nothing in them depends on the working directory."""
    (config,) = load_serve_config(ROOT / "cluster" / name).values()
    monkeypatch.chdir(tmp_path)
    if config.router.classifier.kind == "embedding":
        assert config.router.classifier.artifact_dir == ROUTER_HEADS
        assert latest_path(config_path(config.router.classifier.artifact_dir)).is_file()
    folders = [m.backend.folder for m in config.models if m.backend.kind == "bm25"]
    assert folders == [SEARCH_CORPUS]
    assert any(config_path(folders[0]).glob("*.md"))


def test_site_packages_is_told_apart_from_the_checkout(tmp_path):
    assert in_site_packages(Path(sysconfig.get_paths()["purelib"]) / "some_package" / "data")
    assert not in_site_packages(tmp_path)
    assert not in_site_packages(config_path(ROUTER_HEADS))  # an editable install: the source tree
