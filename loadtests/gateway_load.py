"""Requests, checks and CPU/memory accounting for loadtests/bench_gateway.py.

Every answer is checked: a 200, a chat.completion whose first choice has string content (the stub's
exact word where the stub answers), and, through Switchboard, the model that answered named in
`x-switchboard-model` and not degraded. Streamed answers must be SSE ending in `data: [DONE]`."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import psutil

from gateway_stub import ANSWER


@dataclass
class Target:
    path: str  # direct | switchboard | switchboard_auto | forwarder | litellm
    upstream: str  # stub | llama
    url: str  # the chat-completions URL
    model: str  # what the request names
    expect_model_header: str | None = None  # Switchboard: x-switchboard-model
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    texts: list[str] | None = None  # prompts taken in turn, each made unique by a counter ("Hi" without)
    allow_degraded: bool = False  # distinct prompts: a few go to routes this roster lacks (the LLM answers)
    sent: int = 0

    @property
    def key(self) -> str:
        return f"{self.path}/{self.upstream}"

    def body(self, stream: bool = False) -> dict:
        text = "Hi"
        if self.texts:
            text = f"{self.texts[self.sent % len(self.texts)]} (request {self.sent})"
            self.sent += 1
        body = {"model": self.model, "max_tokens": 1, "temperature": 0,
                "messages": [{"role": "user", "content": text}]}
        return {**body, "stream": True} if stream else body

    def problem(self, response: httpx.Response, stream: bool = False) -> str | None:
        """None for a correct answer, else what is wrong with it."""
        if response.status_code != 200:
            return f"status {response.status_code}: {response.text[:200]}"
        if self.expect_model_header is not None:
            if response.headers.get("x-switchboard-model") != self.expect_model_header:
                return f"answered by {response.headers.get('x-switchboard-model')!r}"
            if response.headers.get("x-switchboard-degraded") != "false" and not self.allow_degraded:
                return "degraded"
        try:
            content = stream_content(response.text) if stream else \
                response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return f"bad body ({exc!r}): {response.text[:200]}"
        if not isinstance(content, str):
            return f"content is {content!r}"
        if self.upstream == "stub" and content != ANSWER:
            return f"content {content!r}, expected {ANSWER!r}"
        return None


def stream_content(text: str) -> str:
    """The content an SSE chat stream carries; ValueError unless it ends with `data: [DONE]`."""
    events = [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]
    if not events or events[-1] != "[DONE]":
        raise ValueError("no [DONE]")
    parts = []
    for event in events[:-1]:
        for choice in json.loads(event).get("choices", []):
            parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def sequential(client: httpx.Client, target: Target, n: int, stream: bool = False) -> list[float]:
    """`n` requests one after another on one kept-alive connection; latencies in ms (errors counted
    on the target, their latency kept too)."""
    out = []
    for _ in range(n):
        body = target.body(stream)
        t = time.perf_counter()
        response = client.post(target.url, json=body, headers=target.headers)
        out.append((time.perf_counter() - t) * 1000)
        problem = target.problem(response, stream)
        if problem:
            target.errors.append(problem)
    return out


async def _concurrent(target: Target, concurrency: int, seconds: float) -> dict:
    ok = failed = 0
    latencies: list[float] = []
    body = target.body()
    # one client (one kept-alive connection) per worker: httpx's shared pool slows down past a few
    # connections (at 32 the client, not the server, was the limit: 220 RPS against 750 at 8). The
    # clients are made and connected (one request each, not counted) before the clock starts.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(timeout=120, limits=limits) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(c.post(target.url, json=body, headers=target.headers) for c in clients))
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient):
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    response = await client.post(target.url, json=target.body(), headers=target.headers)
                    problem = target.problem(response)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                latencies.append((time.perf_counter() - t) * 1000)
                if problem:
                    failed += 1
                    target.errors.append(problem)
                else:
                    ok += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return {"ok": ok, "errors": failed, "elapsed_s": round(elapsed, 2), "rps": round(ok / elapsed, 1),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


def concurrent(target: Target, concurrency: int, seconds: float) -> dict:
    """As many requests as `concurrency` clients get answered in `seconds` (each waits for its answer)."""
    try:
        import uvloop

        return uvloop.run(_concurrent(target, concurrency, seconds))
    except ImportError:
        return asyncio.run(_concurrent(target, concurrency, seconds))


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """user + system CPU seconds of each process (those gone are left out)."""
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots (a process born in between counts whole)."""
    return sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in after.items())


def memory(pids: list[int]) -> dict[str, float]:
    """Summed RSS (shared pages once per process, so it overstates) and PSS (shared pages split), MiB."""
    rss = pss = 0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        except psutil.Error:
            pass
    return {"rss_mib": round(rss / 2**20, 1), "pss_mib": round(pss / 2**20, 1), "processes": len(pids)}
