"""Serve's own account of a deployment: its status and, when it failed, the reason Serve gives.

Two readers: the ingress's `/api/health` (inside a replica, through `serve.status()` in a worker
thread, with a timeout) and the `switchboard run` supervisor (outside Ray, through the dashboard's
REST API that `serve status` also uses). `reason()` turns Serve's multi-line message (a sentence,
then the constructor's traceback) into one line.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from typing import Any, Mapping

FAILED = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The last "SomeError: message" line of a traceback (dotted module paths allowed).
_EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure))\b:?(.*)$")
MAX_REASON = 300
MAX_MESSAGE = 4000


def reason(message: str, limit: int = MAX_REASON) -> str:
    """One line saying why: the exception at the end of Serve's traceback; else how the worker died;
    else the first line after Serve's "Error:"; else its first line."""
    text = _ANSI.sub("", message or "").strip()
    if not text:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            detail = match.group(2).strip()
            return (f"{match.group(1)}: {detail}" if detail else match.group(1))[:limit]
    died = re.search(r"Worker exit detail:\s*(.+)", text)
    if died:
        return f"the replica's worker died: {died.group(1).strip()}"[:limit]
    for i, line in enumerate(lines[:-1]):
        if line.endswith("Error:"):
            return lines[i + 1][:limit]
    return lines[0][:limit]


def failed_deployments(statuses: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """{deployment: {"status", "reason", "message"}} for each deployment Serve marks failed."""
    return {name: {"status": str(s.get("status")), "reason": reason(str(s.get("message") or "")),
                   "message": _ANSI.sub("", str(s.get("message") or ""))[:MAX_MESSAGE]}
            for name, s in statuses.items() if str(s.get("status")) in FAILED}


# ---- inside a replica ----------------------------------------------------------------------

def _statuses_now(app_name: str) -> dict[str, dict[str, str]]:
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return {}
    return {name: {"status": str(getattr(d.status, "value", d.status)), "message": d.message or ""}
            for name, d in app.deployments.items()}


class DeploymentStatusCache:
    """Serve's per-deployment status for one application, fetched in a worker thread.

    At most one lookup runs at a time (a controller that does not answer costs one stuck thread,
    not one per request); a result is reused for `ttl_s`; a caller waits at most `timeout_s`."""

    def __init__(self, app_name: str, *, timeout_s: float = 2.0, ttl_s: float = 2.0, fetch=_statuses_now,
                 clock=time.monotonic) -> None:
        self._app_name = app_name
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._fetch = fetch
        self._clock = clock
        self._value: dict[str, dict[str, str]] | None = None
        self._at = float("-inf")
        self._running: asyncio.Future | None = None
        self._lock = threading.Lock()

    async def get(self) -> dict[str, dict[str, str]]:
        if self._value is not None and self._clock() - self._at < self._ttl_s:
            return self._value
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self._fetch, self._app_name))
        value = await asyncio.wait_for(asyncio.shield(self._running), timeout=self._timeout_s)
        self._value, self._at = value, self._clock()
        return value


_CACHES: dict[str, DeploymentStatusCache] = {}


def deployment_names(config) -> dict[str, str]:
    """Model name (as /api/health names it) -> its Serve deployment's name (a model placed in the
    ingress has none)."""
    names = {spec.name: spec.deployment_name() for spec in config.models if not spec.in_ingress()}
    if config.router.placement == "deployment":
        names["router"] = "router"
    return names


async def serve_reasons(deployment_of: Mapping[str, str], timeout_s: float = 2.0) -> dict[str, dict[str, str]]:
    """{model: {"status", "reason", "message"}} for each of `deployment_of`'s models whose deployment
    Serve marks failed, for the application of the replica this runs in ({} outside a replica).

    Never raises: when Serve cannot be asked in time, the answer says so for every model asked."""
    if not deployment_of:
        return {}
    try:
        from ray import serve

        app_name = serve.get_replica_context().app_name
    except Exception:  # noqa: BLE001 - not inside a replica (tests of the bare app)
        return {}
    cache = _CACHES.get(app_name)
    if cache is None:
        cache = _CACHES[app_name] = DeploymentStatusCache(app_name, timeout_s=timeout_s)
    try:
        statuses = await cache.get()
    except Exception as exc:  # noqa: BLE001 - the health report must still answer
        what = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return {model: {"status": "UNKNOWN", "reason": f"Serve's status unavailable ({what})"[:MAX_REASON],
                        "message": ""} for model in deployment_of}
    failed = failed_deployments(statuses)
    return {model: failed[name] for model, name in deployment_of.items() if name in failed}


# ---- outside Ray: the dashboard's REST API ---------------------------------------------------

def fetch_applications(dashboard_url: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """`GET /api/serve/applications/`: {app: {"status", "message", "deployments": {name: {...}}}}."""
    url = dashboard_url.rstrip("/") + "/api/serve/applications/"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a loopback URL
        body = json.load(response)
    return body.get("applications") or {}
