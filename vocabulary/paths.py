"""Where the files a config names are: one rule for every path in a config (and on the command line).

- `package:NAME/PATH`: the file or folder PATH inside the Python package NAME (an import name, dots
  allowed), found with importlib.resources in whatever copy of the package this process imports: the
  checkout in an editable install, site-packages after `pip install .` (a KubeRay image), the uploaded
  copy under a runtime_env `working_dir` (Ray puts it first on each worker's PYTHONPATH). What ships
  with Switchboard is named this way: the router head (`ROUTER_HEADS`), the search corpus
  (`SEARCH_CORPUS`).
- an absolute path (after `~` expansion): as given.
- a relative path: relative to the process's working directory.

Why the working directory, rather than the config file or the package's own folder: under `serve
deploy` the replicas get the parsed config, never its file, so "relative to the config" cannot be
honoured where the paths are read; the package's folder is site-packages after a non-editable install,
neither writable nor anybody's choice. The working directory is what every way of starting chooses on
purpose: `make run` and `serve run` from the checkout (Ray's workers inherit the cwd of the driver or
of `ray start`), a runtime_env `working_dir` (each worker starts inside its copy), a container's
WORKDIR. Where none of these fits, an absolute path does.

`PROJECT_ROOT` is the source checkout, meaningful only when running from one (an editable install):
the developer tools' defaults use it (the CLI's default config and training data, the folder
`switchboard assemble-models` writes), never the data the service reads at run time."""

from __future__ import annotations

import importlib.resources
import re
import site
import sysconfig
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from vocabulary.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PACKAGE_PREFIX = "package:"
ROUTER_HEADS = "package:intent_router/head_artifacts"  # the shipped router head (head-NNNN.json, LATEST)
SEARCH_CORPUS = "package:deployments/search_corpus"  # the documents of the local search backend
PATH_RULE = ("'package:NAME/PATH' is inside the installed Python package NAME; an absolute path is used as "
             "given; a relative path is relative to the working directory of the process (vocabulary/paths.py).")
_PACKAGE_FORM = re.compile(r"^package:([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:/(.*))?$")


def check_config_path(value: str) -> str:
    """`value` unchanged if it is a well-formed path of the rule; ValueError if it is a malformed
    `package:` form. Nothing is imported and nothing needs to exist (that is checked at start)."""
    if value.startswith(PACKAGE_PREFIX):
        match = _PACKAGE_FORM.match(value)
        if match is None or (match.group(2) is not None and not _clean(match.group(2))):
            raise ValueError(f"{value!r}: a package path is 'package:NAME/PATH', NAME an import name and PATH "
                             "a relative path inside it without '..'")
    return value


ConfigPath = Annotated[str, AfterValidator(check_config_path)]  # a config field holding a path of the rule


def config_path(value: str | Path) -> Path:
    """The file or folder `value` names, by the rule of this module. ConfigError when a `package:`
    form names a package that is not installed (or one not installed as plain files)."""
    if isinstance(value, str) and value.startswith(PACKAGE_PREFIX):
        return package_path(value)
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def package_path(value: str) -> Path:
    """`package:NAME/PATH` -> PATH inside the installed package NAME (which is imported to find it)."""
    try:
        check_config_path(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    name, _, inner = value.removeprefix(PACKAGE_PREFIX).partition("/")
    try:
        root = importlib.resources.files(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{value}: package {name!r} is not installed") from exc
    except TypeError as exc:  # a module, not a package
        raise ConfigError(f"{value}: {name!r} is not a package") from exc
    if not isinstance(root, Path):  # a zipped install, or a namespace package spread over folders
        raise ConfigError(f"{value}: package {name!r} is not installed as a single folder of files")
    return root.joinpath(*inner.split("/")) if inner else root


def in_site_packages(path: Path) -> bool:
    """Whether `path` lies in an installed distribution's folder (site-packages, the user's or the
    interpreter's): a package's data there belongs to the install (pip replaces it on upgrade), so
    nothing is written there even where the file system would allow it."""
    paths = sysconfig.get_paths()
    roots = {paths["purelib"], paths["platlib"], *site.getsitepackages(), site.getusersitepackages()}
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots if root)


def _clean(inner: str) -> bool:
    parts = inner.rstrip("/").split("/")
    return all(part not in ("", ".", "..") for part in parts) and not inner.startswith("/")
