"""`switchboard campaign`: a failure campaign (synthetic augmentation of the failure data). It sets
conditional faults on the running service through its admin API, replays a request set against it
(each request with its own x-request-id, `campaign-<run>-<n>`), puts the faults back as they were
and closes the breakers its faults opened (also on Ctrl-C or an error), waits for the request log's lines of its ids, and writes the failure
exemplars those requests caused (intent_router.exemplars.from_log). Loopback only: a campaign breaks
models on purpose, so it never aims at another host.

Files: serve_app/campaign_files.py. The summary has, per request tag and in all: requests, HTTP
statuses, failovers per 100 requests (the log lines' `failovers`), how often a faulted model failed,
and the client's p50 latency."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from serve_app.auth import ADMIN_TOKEN_ENV
from serve_app.campaign_files import CampaignError, CampaignFault, CampaignRequest

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")

ADMIN_TIMEOUT_S = 10.0


@dataclass
class Outcome:
    request_id: str
    endpoint: str
    tag: str | None
    status: int | None  # None: no HTTP answer (timeout, connection refused)
    latency_ms: float
    error: str | None = None
    model: str | None = None  # x-switchboard-model


@dataclass
class CampaignRun:
    run_id: str
    outcomes: list[Outcome] = field(default_factory=list)
    restored: bool = False  # every fault put back as it was before the campaign

    @property
    def request_ids(self) -> list[str]:
        return [o.request_id for o in self.outcomes]


def loopback_only(url: str) -> None:
    """A campaign talks to this machine only."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CampaignError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise CampaignError(f"a campaign injects faults: it runs against loopback only (127.0.0.1, ::1, "
                            f"localhost), not {host!r}")


def new_run_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + "x" + uuid.uuid4().hex[:6]


async def run_campaign(url: str, token: str, faults: list[CampaignFault], requests: list[CampaignRequest], *,
                       concurrency: int = 4, timeout_s: float = 120.0, run_id: str | None = None,
                       transport: httpx.AsyncBaseTransport | None = None) -> CampaignRun:
    """Set the faults, replay the requests, put the faults back as they were."""
    loopback_only(url)
    run = CampaignRun(run_id or new_run_id())
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout_s, trust_env=False) as client:
        before = await _admin(client, "GET", "/api/admin/faults", auth)
        touched: list[str] = []
        try:
            for item in faults:
                touched.append(item.model)
                await _admin(client, "PUT", f"/api/admin/faults/{item.model}", auth,
                             json=item.fault.model_dump(mode="json", exclude_none=True))
            logger.info("campaign faults set", extra={"run": run.run_id, "models": touched})
            run.outcomes = await replay(client, requests, run.run_id, concurrency)
        finally:
            run.restored = await asyncio.shield(_restore(client, touched, before, auth))
    return run


async def replay(client: httpx.AsyncClient, requests: list[CampaignRequest], run_id: str,
                 concurrency: int) -> list[Outcome]:
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(n: int, request: CampaignRequest) -> Outcome:
        request_id = f"campaign-{run_id}-{n}"
        async with slots:
            started = time.perf_counter()
            try:
                response = await client.post(request.endpoint, headers={"x-request-id": request_id},
                                             **_content(request))
            except httpx.HTTPError as exc:
                return Outcome(request_id, request.endpoint, request.tag, None,
                               _ms(started), f"{type(exc).__name__}: {exc}"[:200])
            await response.aread()
            error = None if response.is_success else _error_code(response)
            return Outcome(request_id, request.endpoint, request.tag, response.status_code, _ms(started), error,
                           response.headers.get("x-switchboard-model") or None)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(n, r)) for n, r in enumerate(requests)]
    return [t.result() for t in tasks]


def _content(request: CampaignRequest) -> dict[str, Any]:
    if request.file is not None:
        return {"data": request.form or {}, "files": {"file": request.file}}
    return {"json": request.json}


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or error.get("type") or response.status_code)
    except (ValueError, AttributeError):
        return str(response.status_code)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _admin(client: httpx.AsyncClient, method: str, path: str, auth: dict[str, str], *,
                 absent_ok: bool = False, **kw) -> Any:
    """An admin call; CampaignError unless it succeeds (or, with `absent_ok`, answers 404)."""
    try:
        response = await client.request(method, path, headers=auth, timeout=ADMIN_TIMEOUT_S, **kw)
    except httpx.HTTPError as exc:
        raise CampaignError(f"{method} {path}: the service did not answer ({type(exc).__name__}: {exc})") from None
    if absent_ok and response.status_code == 404:
        return None
    if not response.is_success:
        raise CampaignError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


async def _restore(client: httpx.AsyncClient, models: list[str], before: dict[str, Any],
                   auth: dict[str, str]) -> bool:
    """Each model the campaign touched gets back the fault it had (or none), and its breaker is closed
    (the campaign's failures opened it, not the model's own); every model is tried even when one
    fails. Whether all went back."""
    ok = True
    for model in models:
        try:
            if model in before:
                await _admin(client, "PUT", f"/api/admin/faults/{model}", auth, json=_spec_body(before[model]))
            else:
                await _admin(client, "DELETE", f"/api/admin/faults/{model}", auth, absent_ok=True)  # 404: no such model
            await _admin(client, "POST", f"/api/admin/breakers/{model}/reset", auth, absent_ok=True)  # router: none
        except CampaignError as exc:
            ok = False
            logger.error("campaign fault not restored", extra={"model": model, "error": str(exc)})
    return ok


def _spec_body(listed: dict[str, Any]) -> dict[str, Any]:
    """A fault as GET /api/admin/faults lists it, as a PUT body again."""
    body = {k: v for k, v in listed.items() if v is not None}
    if isinstance(body.get("when"), dict):
        body["when"] = {k: v for k, v in body["when"].items() if v is not None}
    return body


# ---- after the replay: the log's lines, the exemplars, the summary ----------------------------

def wait_for_lines(folder: Path, request_ids: list[str], *, timeout_s: float = 30.0, poll_s: float = 0.25,
                   read: Callable[[Path], Any] | None = None) -> dict[str, dict[str, Any]]:
    """The log lines of `request_ids`, by id, once all are written or `timeout_s` has passed (a line
    is written when its response ends; a replica may flush a little later)."""
    if read is None:
        from serve_app.request_log.reader import read_lines as read
    wanted = set(request_ids)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        if folder.is_dir():
            found = {line["request_id"]: line for line in read(folder) if line.get("request_id") in wanted}
        if len(found) == len(wanted) or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)


def exemplars_of(lines: list[dict[str, Any]], feedback: list[dict[str, Any]],
                 request_ids: list[str]) -> list[dict[str, Any]]:
    from intent_router.exemplars import from_log

    return from_log(lines, feedback, request_ids=request_ids)


def summarize(run: CampaignRun, lines: dict[str, dict[str, Any]], faulted: list[str],
              exemplars: int) -> dict[str, Any]:
    groups: dict[str, list[Outcome]] = {"all": run.outcomes}
    for outcome in run.outcomes:
        if outcome.tag is not None:
            groups.setdefault(f"tag:{outcome.tag}", []).append(outcome)
    return {"run": run.run_id, "faults_restored": run.restored, "log_lines": len(lines),
            "log_lines_missing": len(run.outcomes) - len(lines), "exemplars": exemplars,
            **{name: _stats(outcomes, lines, faulted) for name, outcomes in groups.items()}}


def _stats(outcomes: list[Outcome], lines: dict[str, dict[str, Any]], faulted: list[str]) -> dict[str, Any]:
    logged = [lines[o.request_id] for o in outcomes if o.request_id in lines]
    failovers = sum(int(line.get("failovers") or 0) for line in logged)
    hit = sum(1 for line in logged if set(line.get("failed") or ()) & set(faulted))
    latencies = sorted(o.latency_ms for o in outcomes if o.status is not None)
    return {"requests": len(outcomes),
            "statuses": dict(sorted(Counter(str(o.status or "no_answer") for o in outcomes).items())),
            "answered_by": dict(Counter(o.model for o in outcomes if o.model).most_common()),
            "failovers_per_100": round(100 * failovers / len(logged), 1) if logged else None,
            "faulted_model_failed": hit, "p50_ms": _p50(latencies)}


def _p50(values: list[float]) -> float | None:
    if not values:
        return None
    return values[(len(values) - 1) // 2]


def main(args, log_dir: Path, *, transport: httpx.AsyncBaseTransport | None = None) -> int:
    """The CLI's `campaign` (serve_app/cli.py parses the arguments); `transport` is a test's stand-in
    for the service."""
    from serve_app.campaign_files import read_faults, read_requests
    from serve_app.request_log.reader import read_feedback

    try:
        loopback_only(args.url)
        faults, requests = read_faults(args.faults), read_requests(args.requests)
        token = os.environ.get(args.admin_token_env)
        if not token:
            raise CampaignError(f"set {args.admin_token_env} to the service's admin token")
        run = asyncio.run(run_campaign(args.url, token, faults, requests, concurrency=args.concurrency,
                                       timeout_s=args.timeout, transport=transport))
    except CampaignError as exc:
        sys.stderr.write(f"campaign: {exc}\n")
        return 2
    except KeyboardInterrupt:  # asyncio.run cancelled the campaign; its `finally` put the faults back
        sys.stderr.write("campaign: interrupted; the faults it set were put back as it stopped "
                         "(a fault that could not be is logged)\n")
        return 130
    lines = wait_for_lines(log_dir, run.request_ids, timeout_s=args.log_wait)
    exemplars = exemplars_of(list(lines.values()), read_feedback(log_dir) if log_dir.is_dir() else [],
                             run.request_ids)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in exemplars)
    summary = summarize(run, lines, [f.model for f in faults], len(exemplars))
    summary["exemplars_file"] = str(out)
    if args.results:
        with open(args.results, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(asdict(outcome)) + "\n" for outcome in run.outcomes)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if not run.restored:
        sys.stderr.write("campaign: some faults could not be put back: check GET /api/admin/faults\n")
    return 0 if run.restored else 1
