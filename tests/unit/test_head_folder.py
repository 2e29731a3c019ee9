"""Which folder `train-router` and `rollback-router` write: a new --artifacts folder starts from the
configured (shipped) heads; the shipped head of a non-editable install (in site-packages) is never
written, the command says to pass --artifacts instead. No encoder is loaded here."""

from pathlib import Path

import pytest

from intent_router.head import LATEST, latest_path, rollback, seed, versions
from serve_app import learning_commands
from serve_app.cli import main
from vocabulary.paths import ROUTER_HEADS, config_path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = str(ROOT / "cluster" / "local.yaml")


def shipped() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in config_path(ROUTER_HEADS).iterdir() if p.is_file()}


def test_a_new_folder_is_seeded_with_the_shipped_heads(tmp_path):
    folder = tmp_path / "heads"
    assert seed(folder, config_path(ROUTER_HEADS))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == shipped()
    assert latest_path(folder).is_file()


def test_a_folder_with_its_own_latest_is_left_alone(tmp_path):
    folder = tmp_path / "heads"
    folder.mkdir()
    (folder / "head-0007.json").write_text("{}")
    (folder / LATEST).write_text("head-0007.json\n")
    assert not seed(folder, config_path(ROUTER_HEADS))
    assert sorted(p.name for p in folder.iterdir()) == [LATEST, "head-0007.json"]
    assert not seed(config_path(ROUTER_HEADS), config_path(ROUTER_HEADS))  # never onto itself
    assert not seed(tmp_path / "other", tmp_path / "empty")  # nothing to start from
    assert not (tmp_path / "other").exists()


def test_training_seeds_a_given_folder_and_rollback_reaches_the_shipped_head(tmp_path, capsys):
    config = learning_commands._config(LOCAL)
    folder = learning_commands._artifact_dir(config, str(tmp_path / "heads"), seed=True)
    assert folder == tmp_path / "heads" and "started from the heads in" in capsys.readouterr().err
    first = versions(folder)
    (folder / f"head-{first[-1] + 1:04d}.json").write_bytes(latest_path(folder).read_bytes())  # "training"
    (folder / LATEST).write_text(f"head-{first[-1] + 1:04d}.json\n")
    assert rollback(folder)[1] == latest_path(config_path(ROUTER_HEADS)).name
    assert shipped() == {p.name: p.read_bytes() for p in config_path(ROUTER_HEADS).iterdir() if p.is_file()}


def test_the_configured_folder_is_used_in_a_checkout(tmp_path):
    config = learning_commands._config(LOCAL)
    assert learning_commands._artifact_dir(config, None) == config_path(ROUTER_HEADS)


@pytest.mark.parametrize("command", ["train-router", "rollback-router"])
def test_the_shipped_head_of_an_installed_package_is_not_written(command, monkeypatch, capsys):
    monkeypatch.setattr(learning_commands, "in_site_packages", lambda path: True)  # as after `pip install .`
    before = shipped()
    assert main([command, "--config", LOCAL]) == 2
    err = capsys.readouterr().err
    assert "part of the installed package" in err and "--artifacts" in err
    assert shipped() == before
