"""Resolve a `ModelSource` (installed package or local path) to a file on disk, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vocabulary.config import ModelSource
from vocabulary.errors import ConfigError
from vocabulary.paths import config_path


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(source: ModelSource) -> Path:
    """The model file or directory the source names; ConfigError with the path if it is missing.
    A `path` follows the rule of vocabulary/paths.py: `package:NAME/PATH`, absolute, or relative to the
    working directory (e.g. models/assembled/..., built at install time in the checkout)."""
    base = package_dir(source.package) if source.package else config_path(source.path)
    if not base.exists():
        hint = " (run `switchboard assemble-models`, or `make install`)" if "assembled" in base.parts else ""
        raise ConfigError(f"model path does not exist: {base}{hint}")
    if source.file is None:
        return base
    if base.is_file():
        raise ConfigError(f"model path {base} is a file, but 'file: {source.file}' asks for a glob inside it")
    matches = sorted(base.rglob(source.file))
    if not matches:
        raise ConfigError(f"no file matching {source.file!r} under {base}")
    return matches[0]
