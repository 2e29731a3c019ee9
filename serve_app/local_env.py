"""The environment of a local run, from cluster/serve.env (the file the Makefile includes),
so `make run`, the tests and the benchmarks start Ray and Serve the same way."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / "cluster" / "serve.env"
_LINE = re.compile(r"^\s*([A-Z0-9_]+)\s*\??=\s*(.*?)\s*$")


def local_env(path: Path = ENV_FILE) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if match and not line.lstrip().startswith("#"):
            env[match.group(1)] = match.group(2)
    # Serve's HAProxy binds its stats and metrics ports on every address; this wrapper
    # (serve_app/haproxy_loopback.py) moves them to 127.0.0.1.
    env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(Path(sys.executable).parent / "switchboard-haproxy")
    return env


def apply_local_env(overrides: dict[str, str] | None = None) -> None:
    """Set every variable that is not set already (as make's `?=` does)."""
    for key, value in {**local_env(), **(overrides or {})}.items():
        os.environ.setdefault(key, value)
