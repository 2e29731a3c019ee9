"""Read a Serve config file and validate the Switchboard `args` of each application."""

from __future__ import annotations

from pathlib import Path

import yaml

from serve_app.builder import load_config
from vocabulary.config import SwitchboardConfig

BUILDER = "serve_app.builder:build_app"


def load_serve_config(path: str | Path) -> dict[str, SwitchboardConfig]:
    with open(path) as f:
        serve_config = yaml.safe_load(f)
    return {app["name"]: load_config(app.get("args") or {})
            for app in serve_config.get("applications", []) if app.get("import_path") == BUILDER}
