"""Prometheus metrics of the ingress, through `ray.serve.metrics`.

Ray exports them from each node's metrics agent (`<node>:<metrics-export-port>/metrics`) with a
`ray_` prefix, counters with a `_total` suffix, and the replica's tags (deployment, replica,
application) added. Nearly everything is derived from the request log's line (`observe`), so the
metrics and the log cannot disagree; breaker changes, feedback and the router's version come in
through their own methods. Every tag value is bounded: names the roster or the app defines, or
"other"; never a request id or free text.

Counter increments are summed per tag set, and histogram values queued, then recorded once a second
by a thread of their own (`CounterBatch`): Ray's record calls were the costliest metrics work on a
request's path (a counter about 0.6 ms, a histogram value about 0.1 ms, on the event loop, in the
gateway benchmark's profiles), and Ray exports every few seconds anyway. Gauges are set at once (they
change rarely: breaker states, the router's version).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from graphs.blame import Blame
from graphs.breaker import BreakerState

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
BREAKER_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
# Model calls take from a few milliseconds (a cached probe, OCR of a blank image) to minutes. Ray 2.60
# exports a histogram's `_sum` from its buckets' midpoints: read quantiles from `_bucket`, rates from
# `_count`, never a mean from `_sum`.
LATENCY_BOUNDARIES_MS = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000]
CONFIDENCE_BOUNDARIES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
COMMITTEE_ENDPOINT = "/api/committee"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
PATH = re.compile(r"^/[A-Za-z0-9._/-]{0,63}$")
OTHER = "other"
MAX_UNLISTED_VALUES = 64  # distinct values a tag admits without a known list, before "other"
COUNT_EVERY_S = 1.0  # how often summed counter increments and queued histogram values are recorded (0: at once)
MAX_PENDING_VALUES = 100_000  # histogram values queued between two flushes (a few MB at most)


class TagValues:
    """One tag's values, bounded: the known ones as they are; without a known list, names that look
    like names up to a number of distinct values; everything else "other"; no value "none"."""

    def __init__(self, known: Iterable[str] | None = None, cap: int = MAX_UNLISTED_VALUES,
                 pattern: re.Pattern = NAME) -> None:
        self._known = frozenset(known) if known else None
        self._pattern = pattern
        self._seen: set[str] = set()
        self._cap = cap

    def __call__(self, value: Any) -> str:
        if value is None or value == "":
            return "none"
        value = str(value)
        if self._known is not None:
            return value if value in self._known else OTHER
        if value in self._seen:
            return value
        if self._pattern.match(value) and len(self._seen) < self._cap:
            self._seen.add(value)
            return value
        return OTHER


class EndpointValues:
    """Request paths to the app's route templates (`/api/admin/faults/{model}`); unknown paths "other"."""

    def __init__(self, templates: Iterable[str] | None = None) -> None:
        self._routes = [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"), t)
                        for t in (templates or ())]
        self._unlisted = TagValues(pattern=PATH) if not self._routes else None

    def __call__(self, path: Any) -> str:
        if self._unlisted is not None:
            return self._unlisted(path)
        for pattern, template in self._routes:
            if isinstance(path, str) and pattern.match(path):
                return template
        return OTHER


def _flag(value: Any) -> str:
    return "true" if value else "false"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def is_committee(line: dict) -> bool:
    """A committee answered the request: /api/committee, or a chat the committee answered (the line's
    `committee` is set)."""
    return line.get("endpoint") == COMMITTEE_ENDPOINT or bool(line.get("committee"))


def committee_timeouts(line: dict) -> list[str]:
    """The committee members that ran out of time. With the committee's member results in the line
    (`committee: {"members": [{"member", "status"}, ...]}` or a list of them), the members whose status
    is "timeout"; otherwise the calls of a committee request that failed on the deadline (blame
    "deadline"). Empty for any other request."""
    if not is_committee(line):
        return []
    detail = line.get("committee")
    members = detail.get("members") if isinstance(detail, dict) else detail if isinstance(detail, list) else None
    if members is not None:
        return [m.get("member") or m.get("name") or m.get("model") for m in members
                if isinstance(m, dict) and m.get("status") == "timeout"]
    return [c.get("model") for c in line.get("calls") or () if c.get("blame") == "deadline"]


def failovers(line: dict) -> list[tuple[str, str]]:
    """(from, to) for each move of a chain to the next model: a failed call (status "error") whose next
    call is to another model. A retry on the same model is no move, so a model retried and then left
    is one failover (the line's `failovers` counts failed calls: two there). Skipped models (breaker
    open) and a committee's members, which run side by side, are no moves."""
    if is_committee(line):
        return []
    calls = [c for c in line.get("calls") or () if c.get("status") != "skipped"]
    return [(a.get("model"), b.get("model")) for a, b in pairwise(calls)
            if a.get("status") == "error" and a.get("model") != b.get("model")]


class CounterBatch:
    """Counter increments summed per (counter, tags), and histogram values queued (at most
    MAX_PENDING_VALUES between two flushes; past it they are dropped and counted in `dropped`), recorded
    together every `every_s` seconds by one thread (started by the first record), or each at once with
    `every_s` 0. `flush()` records what is pending now; `close()` flushes and stops the thread."""

    def __init__(self, every_s: float = COUNT_EVERY_S) -> None:
        self.every_s = every_s
        self._pending: dict[tuple[Any, tuple[tuple[str, str], ...]], float] = {}
        self._values: list[tuple[Any, float, dict[str, str]]] = []
        self.dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def inc(self, counter: Any, tags: dict[str, str]) -> None:
        if self.every_s <= 0:
            counter.inc(tags=tags)
            return
        key = (counter, tuple(tags.items()))
        with self._lock:
            self._pending[key] = self._pending.get(key, 0.0) + 1.0
            self._start()

    def observe(self, histogram: Any, value: float, tags: dict[str, str]) -> None:
        if self.every_s <= 0:
            histogram.observe(value, tags=tags)
            return
        with self._lock:
            if len(self._values) >= MAX_PENDING_VALUES:
                self.dropped += 1
                return
            self._values.append((histogram, value, tags))
            self._start()

    def _start(self) -> None:  # under the lock
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="metrics-batch", daemon=True)
            self._thread.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            values, self._values = self._values, []
        for (counter, tags), value in pending.items():
            try:
                counter.inc(value, tags=dict(tags))
            except Exception:  # a metric never costs a request anything
                logger.exception("counter not recorded", extra={"metric": getattr(counter, "_name", None)})
        for histogram, value, tags in values:
            try:
                histogram.observe(value, tags=tags)
            except Exception:
                logger.exception("histogram value not recorded", extra={"metric": getattr(histogram, "_name", None)})

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.flush()


class IngressMetrics:
    def __init__(self, *, models: Iterable[str] | None = None, endpoints: Iterable[str] | None = None,
                 metrics_module: Any = None, count_every_s: float = COUNT_EVERY_S) -> None:
        """`models`: every name a call, an answer or a committee member can have (roster models,
        routes, "llm_only"); its breaker gauges start at closed. `endpoints`: the app's route
        templates. Without them, tag values are bounded by count. `metrics_module` defaults to
        `ray.serve.metrics`; tests pass a recording fake. `count_every_s`: see `CounterBatch`."""
        if metrics_module is None:
            from ray.serve import metrics as metrics_module
        m = metrics_module
        self._counts = CounterBatch(count_every_s)
        self._versions: dict[str, int] = {}
        models = list(models) if models is not None else None
        self._model = TagValues(None if models is None else [*models, "committee"])
        self._endpoint = EndpointValues(endpoints)
        self._intent, self._classifier, self._code, self._head = TagValues(), TagValues(), TagValues(), TagValues()
        self._flag_name, self._variant, self._route = TagValues(), TagValues(), TagValues()
        self._blame = TagValues([b.value for b in Blame])

        self._transitions = m.Counter(
            "switchboard_breaker_transitions", description="Circuit breaker state changes.",
            tag_keys=("model", "from_state", "to_state"))
        self._breaker = m.Gauge(
            "switchboard_breaker_state", description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            tag_keys=("model",))
        self._requests = m.Counter(
            "switchboard_requests", description="Requests by endpoint, intent, HTTP status, error code, "
            "answering model and whether the answer was degraded.",
            tag_keys=("endpoint", "intent", "status", "error_code", "model", "degraded"))
        self._request_latency = m.Histogram(
            "switchboard_request_latency_ms", description="Whole-request time in the ingress, milliseconds.",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("endpoint", "status"))
        self._model_latency = m.Histogram(
            "switchboard_model_latency_ms", description="Time of one call to a model, milliseconds, by outcome "
            "(ok or error).", boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("model", "status"))
        self._model_errors = m.Counter(
            "switchboard_model_errors", description="Failed model calls, by who caused the failure "
            "(model, client, deadline, platform).", tag_keys=("model", "blame"))
        self._model_skipped = m.Counter(
            "switchboard_model_skipped", description="Models skipped without a call (breaker open).",
            tag_keys=("model",))
        self._failovers = m.Counter(
            "switchboard_failovers", description="A chain moved on from a failed model to the next.",
            tag_keys=("intent", "from_model", "to_model"))
        self._route_decisions = m.Counter(
            "switchboard_route_decisions", description="The router's decisions, by intent and classifier.",
            tag_keys=("decision", "classifier"))
        self._route_confidence = m.Histogram(
            "switchboard_route_confidence", description="The router's confidence in its decision.",
            boundaries=CONFIDENCE_BOUNDARIES, tag_keys=("decision",))
        self._degraded = m.Counter(
            "switchboard_degraded_answers", description="Answers marked degraded (a fallback, a missing "
            "committee member, an LLM-only answer).", tag_keys=("endpoint", "intent", "model"))
        self._committee_timeouts = m.Counter(
            "switchboard_committee_timeouts", description="Committee members with no answer before the "
            "deadline.", tag_keys=("member",))
        self._untrusted = m.Counter(
            "switchboard_untrusted_transcripts", description="Transcripts under stt.min_confidence, "
            "marked untrusted.", tag_keys=("endpoint",))
        self._feedback = m.Counter(
            "switchboard_feedback", description="Feedback posted, by rating and whether it corrects the "
            "intent or model.", tag_keys=("rating", "corrected"))
        self._variants = m.Counter(
            "switchboard_canary_requests", description="Requests a canary flag split, by flag, variant, the "
            "model that answered and the HTTP status.", tag_keys=("flag", "variant", "model", "status"))
        self._variant_latency = m.Histogram(
            "switchboard_canary_latency_ms", description="Whole-request time of the requests a canary flag "
            "split, by flag and variant, milliseconds.", boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("flag", "variant"))
        self._shadows = m.Counter(
            "switchboard_shadow_calls", description="Shadow calls, by route, shadow model and how they ended "
            "(ok, error, timeout, dropped).", tag_keys=("route", "model", "status"))
        self._shadow_similarity = m.Histogram(
            "switchboard_shadow_similarity", description="Similarity of a shadow's answer to the primary's.",
            boundaries=CONFIDENCE_BOUNDARIES, tag_keys=("route", "model"))
        self._router_version = m.Gauge(
            "switchboard_router_version", description="Version of the router head in use.", tag_keys=("head",))
        for model in models or ():
            self._breaker.set(BREAKER_LEVEL[BreakerState.CLOSED], tags={"model": self._model(model)})

    # ---- events ---------------------------------------------------------------------------

    def breaker_changed(self, model: str, old: BreakerState, new: BreakerState) -> None:
        logger.warning("circuit breaker state change",
                       extra={"model": model, "from_state": old.value, "to_state": new.value})
        tags = {"model": self._model(model)}
        self._transitions.inc(tags={**tags, "from_state": old.value, "to_state": new.value})
        self._breaker.set(BREAKER_LEVEL[new], tags=tags)

    def feedback(self, rating: str, corrected: bool) -> None:
        self._counts.inc(self._feedback, {"rating": rating if rating in ("up", "down") else OTHER,
                                          "corrected": _flag(corrected)})

    def router_version(self, version: int, head: str = "intent") -> None:
        """Set when it changes (every classified request reports it)."""
        tag = self._head(head)
        if self._versions.get(tag) != int(version):
            self._versions[tag] = int(version)
            self._router_version.set(int(version), tags={"head": tag})

    def request_done(self, intent: str | None, model: str | None, outcome: str, degraded: bool) -> None:
        """Before the request log: a request's outcome without its line. Use `observe`."""
        self._counts.inc(self._requests, {"endpoint": OTHER, "intent": self._intent(intent),
                                          "status": self._code(outcome), "error_code": "none",
                                          "model": self._model(model), "degraded": _flag(degraded)})

    # ---- one finished request -------------------------------------------------------------

    def observe(self, line: dict) -> None:
        """Everything one request-log line says: the request, each model call, the route, failovers,
        committee timeouts, a degraded answer, an untrusted transcript."""
        endpoint = self._endpoint(line.get("endpoint"))
        intent = self._intent(line.get("intent"))
        status = str(line.get("status")) if isinstance(line.get("status"), int) else "none"
        model = self._model(line.get("model"))
        degraded = bool(line.get("degraded"))
        self._counts.inc(self._requests, {"endpoint": endpoint, "intent": intent, "status": status,
                                          "error_code": self._code(line.get("error_code")), "model": model,
                                          "degraded": _flag(degraded)})
        if (total := _number(line.get("total_ms"))) is not None:
            self._counts.observe(self._request_latency, total, {"endpoint": endpoint, "status": status})
        for call in line.get("calls") or ():
            self._observe_call(call)
        for from_model, to_model in failovers(line):
            self._counts.inc(self._failovers, {"intent": intent, "from_model": self._model(from_model),
                                               "to_model": self._model(to_model)})
        route = line.get("route")
        if isinstance(route, dict):
            decision = self._intent(route.get("decision"))
            self._counts.inc(self._route_decisions,
                             {"decision": decision, "classifier": self._classifier(route.get("classifier"))})
            if (confidence := _number(route.get("confidence"))) is not None:
                self._counts.observe(self._route_confidence, confidence, {"decision": decision})
            if isinstance(route.get("head_version"), int):
                self.router_version(route["head_version"])
        if degraded:
            self._counts.inc(self._degraded, {"endpoint": endpoint, "intent": intent, "model": model})
        for member in committee_timeouts(line):
            self._counts.inc(self._committee_timeouts, {"member": self._model(member)})
        if line.get("untrusted"):
            self._counts.inc(self._untrusted, {"endpoint": endpoint})
        variant = line.get("variant")
        if isinstance(variant, dict):
            tags = {"flag": self._flag_name(variant.get("flag")), "variant": self._variant(variant.get("variant"))}
            self._counts.inc(self._variants, {**tags, "model": model, "status": status})
            if total is not None:
                self._counts.observe(self._variant_latency, total, tags)

    def shadow(self, entry: dict) -> None:
        """One shadow comparison (serve_app/shadowing.py)."""
        shadow = entry.get("shadow") or {}
        tags = {"route": self._route(entry.get("route")), "model": self._model(shadow.get("model"))}
        status = shadow.get("status")
        self._counts.inc(self._shadows, {**tags, "status": status if status in ("ok", "error", "timeout", "dropped")
                                         else OTHER})
        if (similarity := _number(entry.get("similarity"))) is not None:
            self._counts.observe(self._shadow_similarity, similarity, tags)

    def flush(self) -> None:
        """Record the counter increments pending now (they are recorded every `count_every_s` anyway)."""
        self._counts.flush()

    def close(self) -> None:
        self._counts.close()

    def _observe_call(self, call: dict) -> None:
        model = self._model(call.get("model"))
        status = call.get("status")
        if status == "skipped":
            self._counts.inc(self._model_skipped, {"model": model})
            return
        if status not in ("ok", "error"):  # cancelled: the request ended first; its time says nothing
            return
        if (latency := _number(call.get("latency_ms"))) is not None:
            self._counts.observe(self._model_latency, latency, {"model": model, "status": status})
        if status == "error":
            self._counts.inc(self._model_errors, {"model": model, "blame": self._blame(call.get("blame"))})
