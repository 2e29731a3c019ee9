"""Deep health: probe every model with a tiny real input, summarise per route, cache briefly.

`probes` maps a model name to (route, async probe); a probe returns its latency in ms or
raises. The summary is `ok` (every model answers), `degraded` (some do not, but every route
still has a living model) or `down` (some route has none).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Mapping

Probe = Callable[[], Awaitable[float]]


class HealthMonitor:
    def __init__(self, probes: Mapping[str, tuple[str, Probe]], *, timeout_s: float, cache_s: float,
                 clock=time.monotonic) -> None:
        self._probes = dict(probes)
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._cached: dict[str, Any] | None = None
        self._cached_at = float("-inf")
        self._lock = asyncio.Lock()

    async def report(self) -> dict[str, Any]:
        """The latest summary; concurrent callers share one round of probes."""
        async with self._lock:
            if self._cached is None or self._clock() - self._cached_at >= self._cache_s:
                self._cached = await self._probe_all()
                self._cached_at = self._clock()
            return self._cached

    async def _probe_all(self) -> dict[str, Any]:
        names = list(self._probes)
        results = await asyncio.gather(*(self._probe_one(n) for n in names))
        models = dict(zip(names, results))
        routes: dict[str, bool] = {}
        for name, (route, _) in self._probes.items():
            routes[route] = routes.get(route, False) or models[name]["status"] == "ok"
        if all(m["status"] == "ok" for m in models.values()):
            status = "ok"
        elif all(routes.values()):
            status = "degraded"
        else:
            status = "down"
        return {"status": status, "routes": {r: ("ok" if alive else "down") for r, alive in routes.items()},
                "models": models}

    async def _probe_one(self, name: str) -> dict[str, Any]:
        route, probe = self._probes[name]
        started = self._clock()
        try:
            latency = await asyncio.wait_for(probe(), timeout=self._timeout_s)
            return {"route": route, "status": "ok", "latency_ms": latency, "error": None}
        except TimeoutError:
            error = f"no answer within {self._timeout_s}s"
        except Exception as exc:  # any failure of a probe is reported, never raised
            error = _describe(exc)
        return {"route": route, "status": "error",
                "latency_ms": round((self._clock() - started) * 1000, 2), "error": error}


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if not message:  # a wrapped remote error: its last line says what happened
        lines = str(exc).strip().splitlines()
        message = lines[-1] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {message}"[:300]


_SERVE_FAILED = ("DEPLOY_FAILED", "UNHEALTHY")


def with_deployment_reasons(report: dict[str, Any], reasons: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The report, with the platform's own account of each failing model's deployment.

    `reasons` maps a model to {"status", "reason", "message"} as the platform (Serve) gives them. A
    failing model whose deployment the platform marks failed gets that reason as its `error` (the
    probe's own error, often only "DeploymentUnavailableError", moves to `probe_error`); any
    reason given is kept under `deployment`. Models that answer their probe are left alone."""
    if not reasons:
        return report
    models = {}
    for name, entry in report["models"].items():
        why = reasons.get(name)
        if why and entry.get("status") != "ok":
            entry = {**entry, "deployment": dict(why)}
            if why.get("status") in _SERVE_FAILED and why.get("reason"):
                entry["probe_error"] = entry.get("error")
                entry["error"] = f"deployment {why['status']}: {why['reason']}"
        models[name] = entry
    return {**report, "models": models}


def public_view(report: dict[str, Any]) -> dict[str, Any]:
    """The report as anyone may read it (the unauthenticated /api/health): each model's route,
    status, latency and a reason class (the error's type, `timeout`, or `deployment_failed`), without
    the error text, which may hold internal addresses and paths (the admin view has it)."""
    models = {}
    for name, entry in report["models"].items():
        public = {k: entry[k] for k in ("route", "status", "latency_ms", "breaker", "failures_in_window") if k in entry}
        public["reason"] = reason_class(entry)
        models[name] = public
    return {**report, "models": models}


def reason_class(entry: Mapping[str, Any]) -> str | None:
    if entry.get("status") == "ok":
        return None
    error = str(entry.get("error") or "")
    if error.startswith("deployment "):
        return "deployment_failed"
    if error.startswith("no answer within"):
        return "timeout"
    head = error.split(":", 1)[0].strip()
    return head if head.isidentifier() else "error"
