"""Request shadowing: a share of a route's requests (the `shadow.<route>` flag names the model, a
fractional split the share) is also sent to a shadow model once the user's answer is on its way.

The user's request only hands over a job (`offer`, never awaited: a full queue drops the job and
counts it); a few workers per ingress replica run the jobs, each under its own timeout, with the
model's injected faults but not its breaker (a shadow never opens a breaker for users). The shadow's
answer is never streamed or returned: it is compared with the primary's (normalised Levenshtein
similarity) and written beside the request log, in shadow-<replica>.jsonl, without text:

    {"request_id", "ts", "route", "primary": {"model", "latency_ms", "output_chars"},
     "shadow": {"model", "status": ok|error|timeout|dropped, "error", "latency_ms", "output_chars"},
     "similarity"}
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from rapidfuzz.distance import Levenshtein

from graphs.deadline import Deadline
from serve_app.request_log.record import short_error
from serve_app.services.roster import Roster
from vocabulary.calls import ChatCall
from vocabulary.config import ShadowSpec

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
MAX_COMPARED_CHARS = 20_000


@dataclass
class ShadowJob:
    request_id: str
    route: str
    model: str
    call: Callable[[Deadline], ChatCall]  # the primary's call, rebuilt with the shadow's own deadline
    primary_model: str
    primary_text: str
    primary_ms: float
    facts: Any = None


def answer_text(result: dict[str, Any]) -> str:
    choices = result.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


class ShadowRunner:
    def __init__(self, roster: Roster, spec: ShadowSpec, write: Callable[[dict[str, Any]], Any] | None) -> None:
        self._roster = roster
        self._spec = spec
        self._write = write
        self._queue: asyncio.Queue[ShadowJob] | None = None
        self._workers: list[asyncio.Task] = []
        self.counts = {"offered": 0, "dropped": 0, "ok": 0, "error": 0, "timeout": 0}

    def model_for(self, route: str, ctx) -> str | None:
        """The shadow of this request's route, if any (decided before the answer: `offer` skips a
        shadow that turned out to be the model that answered)."""
        model = self._roster.switches.shadow(route, ctx.targeting_key or ctx.request_id)
        return model if model in self._roster.clients else None

    async def hand_over(self, job: ShadowJob) -> None:
        """`offer`, as a response's background task (run on the event loop once the answer is sent)."""
        self.offer(job)

    def offer(self, job: ShadowJob) -> None:
        """Hand the job over; never waits. A full queue drops it (logged and counted). Nothing to
        compare when the shadow is the model that answered (a failover reached it)."""
        if job.model == job.primary_model:
            return
        if self._queue is None:
            self._queue = asyncio.Queue(self._spec.max_queue)
            self._workers = [asyncio.get_running_loop().create_task(self._work())
                             for _ in range(self._spec.concurrency)]
        self.counts["offered"] += 1
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.counts["dropped"] += 1
            self._record(job, "dropped", None, None, "")

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._run(job)
            except Exception:  # a shadow never takes the worker down
                logger.exception("shadow job failed", extra={"request_id": job.request_id, "model": job.model})
            finally:
                self._queue.task_done()

    async def _run(self, job: ShadowJob) -> None:
        client = self._roster.clients[job.model]
        started = time.perf_counter()
        deadline = Deadline(self._spec.timeout_s)
        try:
            result = await asyncio.wait_for(self._roster.faults.around(
                job.model, lambda: client.call("chat", job.call(deadline), deadline), lambda out, _: out, job.facts),
                timeout=self._spec.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            status, error, text = "timeout", f"no answer within {self._spec.timeout_s}s", ""
        except Exception as exc:
            status, error, text = "error", short_error(exc), ""
        else:
            status, error, text = "ok", None, answer_text(result)
        self.counts[status] += 1
        self._record(job, status, error, round((time.perf_counter() - started) * 1000, 2), text)

    def _record(self, job: ShadowJob, status: str, error: str | None, latency_ms: float | None, text: str) -> None:
        similarity = None
        if status == "ok":
            similarity = round(Levenshtein.normalized_similarity(job.primary_text[:MAX_COMPARED_CHARS],
                                                                 text[:MAX_COMPARED_CHARS]), 4)
        entry = {"request_id": job.request_id, "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                 "route": job.route,
                 "primary": {"model": job.primary_model, "latency_ms": job.primary_ms,
                             "output_chars": len(job.primary_text)},
                 "shadow": {"model": job.model, "status": status, "error": error, "latency_ms": latency_ms,
                            "output_chars": len(text)},
                 "similarity": similarity}
        if status != "ok":
            logger.info("shadow call did not answer", extra={"request_id": job.request_id, "model": job.model,
                                                             "status": status, "error": error})
        if self._write is not None:
            self._write(entry)
