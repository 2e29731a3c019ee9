"""IngressMetrics over a recording fake of `ray.serve.metrics` (Ray's objects record nowhere a test can
read outside a cluster; tests/integration/test_metrics_export.py scrapes the real export), and the
Grafana dashboard against the metrics defined here."""

import json
import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

from graphs.breaker import BreakerState
from serve_app.metrics import IngressMetrics, TagValues, committee_timeouts, failovers

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana-switchboard.json"
# What the ingress passes: the roster's models, "llm_only", and the routes (committee members).
MODELS = ["smollm2", "smollm2-hf", "smollm2-upstream", "whisper-base", "rapidocr", "tesseract", "llm_only",
          "vision", "stt", "search", "text"]
ENDPOINTS = ["/v1/chat/completions", "/api/committee", "/api/feedback", "/api/admin/faults/{model}"]


class FakeRayServeMetrics:
    """Stands in for `ray.serve.metrics`: records every value, and checks what Ray checks (every tag
    key given, tag values str, counters only go up)."""

    def __init__(self) -> None:
        self.defined: dict[str, FakeRayServeMetrics.Metric] = {}

    def _define(self, kind, name, description="", tag_keys=(), boundaries=None):
        if name in self.defined:
            raise ValueError(f"metric {name} defined twice")
        metric = self.defined[name] = FakeRayServeMetrics.Metric(kind, name, tuple(tag_keys), boundaries)
        return metric

    def Counter(self, name, description="", tag_keys=None):
        return self._define("counter", name, description, tag_keys or ())

    def Gauge(self, name, description="", tag_keys=None):
        return self._define("gauge", name, description, tag_keys or ())

    def Histogram(self, name, description="", boundaries=None, tag_keys=None):
        if not boundaries or any(b <= 0 for b in boundaries):
            raise ValueError("Ray needs positive histogram boundaries")
        return self._define("histogram", name, description, tag_keys or (), boundaries)

    class Metric:
        def __init__(self, kind, name, tag_keys, boundaries) -> None:
            self.kind, self.name, self.tag_keys, self.boundaries = kind, name, tag_keys, boundaries
            self.values: dict[tuple, float] = defaultdict(float)  # counter totals, gauge values
            self.observed: dict[tuple, list[float]] = defaultdict(list)

        def _key(self, tags):
            if set(tags or {}) != set(self.tag_keys):
                raise ValueError(f"{self.name}: tags {sorted(tags or {})} != {sorted(self.tag_keys)}")
            if not all(isinstance(v, str) for v in tags.values()):
                raise TypeError(f"{self.name}: tag values must be str: {tags}")
            return tuple(sorted(tags.items()))

        def inc(self, value=1.0, tags=None):
            if value <= 0:
                raise ValueError("a counter only goes up")
            self.values[self._key(tags)] += value

        def set(self, value, tags=None):
            self.values[self._key(tags)] = value

        def observe(self, value, tags=None):
            self.observed[self._key(tags)].append(value)

        def get(self, **tags) -> float:
            return self.values.get(tuple(sorted(tags.items())), 0.0)

        def samples(self, **tags) -> list[float]:
            return self.observed.get(tuple(sorted(tags.items())), [])

        def total(self) -> float:
            return sum(self.values.values())


@pytest.fixture
def fake():
    return FakeRayServeMetrics()


@pytest.fixture
def metrics(fake):
    """Counters recorded at once (count_every_s 0); the summed path has tests of its own below."""
    return IngressMetrics(models=MODELS, endpoints=ENDPOINTS, metrics_module=fake, count_every_s=0)


def call(model, status="ok", latency_ms=120.0, attempt=1, blame=None, error=None):
    return {"model": model, "attempt": attempt, "latency_ms": latency_ms, "status": status, "error": error,
            "blame": blame, "breaker_state": "closed", "tokens_in": 12, "tokens_out": 30, "output_length": 120}


def line(**fields):
    base = {"request_id": "a1b2c3", "ts": "2026-01-01T00:00:00.000+00:00", "endpoint": "/v1/chat/completions",
            "method": "POST", "status": 200, "error_code": None, "intent": "text",
            "route": {"decision": "text", "confidence": 0.93, "classifier": "embedding", "head_version": 3},
            "calls": [call("smollm2")], "model": "smollm2", "models": ["smollm2"], "degraded": False, "failed": [],
            "failovers": 0, "deadline_ms": 60000, "total_ms": 180.5, "agreement": None, "stt_confidence": None,
            "untrusted": False, "input_chars": 11, "attachments": {"images": 0, "audio": 0}, "stream": False,
            "client_gone": False, "replica": "r1"}
    return {**base, **fields}


def test_an_ok_chat_counts_the_request_its_call_and_its_route(fake, metrics):
    metrics.observe(line())
    d = fake.defined
    assert d["switchboard_requests"].get(endpoint="/v1/chat/completions", intent="text", status="200",
                                         error_code="none", model="smollm2", degraded="false") == 1
    assert d["switchboard_model_latency_ms"].samples(model="smollm2", status="ok") == [120.0]
    assert d["switchboard_request_latency_ms"].samples(endpoint="/v1/chat/completions", status="200") == [180.5]
    assert d["switchboard_route_decisions"].get(decision="text", classifier="embedding") == 1
    assert d["switchboard_route_confidence"].samples(decision="text") == [0.93]
    assert d["switchboard_router_version"].get(head="intent") == 3
    for quiet in ("switchboard_model_errors", "switchboard_failovers", "switchboard_degraded_answers",
                  "switchboard_committee_timeouts", "switchboard_untrusted_transcripts", "switchboard_model_skipped"):
        assert d[quiet].total() == 0, quiet


def test_a_failover_counts_the_failed_call_its_blame_and_the_move(fake, metrics):
    metrics.observe(line(
        calls=[call("smollm2", "error", 30_000.0, blame="model", error="ModelError: boom"),
               call("smollm2-hf", latency_ms=900.0)],
        model="smollm2-hf", models=["smollm2-hf"], failed=["smollm2"], failovers=1, degraded=True))
    d = fake.defined
    assert d["switchboard_model_errors"].get(model="smollm2", blame="model") == 1
    assert d["switchboard_model_latency_ms"].samples(model="smollm2", status="error") == [30_000.0]
    assert d["switchboard_model_latency_ms"].samples(model="smollm2-hf", status="ok") == [900.0]
    assert d["switchboard_failovers"].get(intent="text", from_model="smollm2", to_model="smollm2-hf") == 1
    assert d["switchboard_degraded_answers"].get(endpoint="/v1/chat/completions", intent="text",
                                                 model="smollm2-hf") == 1
    assert d["switchboard_requests"].get(endpoint="/v1/chat/completions", intent="text", status="200",
                                         error_code="none", model="smollm2-hf", degraded="true") == 1


def test_a_retry_on_the_same_model_is_no_failover_and_a_skipped_model_has_no_latency(fake, metrics):
    metrics.observe(line(calls=[{**call("smollm2", status="skipped", latency_ms=0.0), "attempt": 0,
                                 "breaker_state": "open", "blame": "none"},
                                call("smollm2-hf", "error", 50.0, blame="platform"),
                                call("smollm2-hf", attempt=2)],
                         model="smollm2-hf"))
    d = fake.defined
    assert d["switchboard_failovers"].total() == 0
    assert d["switchboard_model_skipped"].get(model="smollm2") == 1
    assert d["switchboard_model_latency_ms"].samples(model="smollm2", status="ok") == []
    assert d["switchboard_model_errors"].get(model="smollm2-hf", blame="platform") == 1


def test_a_504_with_every_model_failing(fake, metrics):
    metrics.observe(line(status=504, error_code="deadline_exceeded", model=None, models=[],
                         calls=[call("smollm2", "error", 59_000.0, blame="deadline"),
                                {**call("smollm2-hf", "cancelled", 900.0), "blame": "none"}],
                         failed=["smollm2"], failovers=1, total_ms=60_010.0))
    d = fake.defined
    assert d["switchboard_requests"].get(endpoint="/v1/chat/completions", intent="text", status="504",
                                         error_code="deadline_exceeded", model="none", degraded="false") == 1
    assert d["switchboard_model_errors"].get(model="smollm2", blame="deadline") == 1
    assert d["switchboard_failovers"].get(intent="text", from_model="smollm2", to_model="smollm2-hf") == 1
    # A call cancelled because the request ended says nothing about the model's speed.
    assert d["switchboard_model_latency_ms"].samples(model="smollm2-hf", status="ok") == []
    assert d["switchboard_request_latency_ms"].samples(endpoint="/v1/chat/completions", status="504") == [60_010.0]
    assert d["switchboard_committee_timeouts"].total() == 0  # a deadline outside a committee


def test_a_committee_member_timeout(fake, metrics):
    metrics.observe(line(endpoint="/api/committee", intent=None, route=None, model="smollm2",
                         calls=[call("rapidocr", latency_ms=400.0),
                                call("tesseract", "error", 8_000.0, blame="deadline", error="DeadlineExceeded: x"),
                                call("smollm2")],
                         degraded=True))
    assert fake.defined["switchboard_committee_timeouts"].get(member="tesseract") == 1
    assert fake.defined["switchboard_route_decisions"].total() == 0


def test_a_chat_the_committee_answered_counts_members_from_the_committee_detail(fake, metrics):
    metrics.observe(line(committee={"members": [{"member": "vision", "status": "ok"},
                                                {"member": "stt", "status": "timeout"}]}))
    assert fake.defined["switchboard_committee_timeouts"].get(member="stt") == 1
    assert fake.defined["switchboard_committee_timeouts"].total() == 1
    assert committee_timeouts(line(committee=[{"member": "stt", "status": "timeout"}])) == ["stt"]


def test_an_untrusted_transcript(fake, metrics):
    metrics.observe(line(endpoint="/v1/audio/transcriptions", untrusted=True, stt_confidence=0.4))
    # /v1/audio/transcriptions is not among this test's endpoint templates: it is "other".
    assert fake.defined["switchboard_untrusted_transcripts"].get(endpoint="other") == 1


def test_tag_values_are_bounded(fake, metrics):
    metrics.observe(line(endpoint="/api/admin/faults/smollm2", model="no-such-model",
                         calls=[call("no-such-model")]))
    metrics.observe(line(endpoint="/does/not/exist/a1b2c3", status=404, error_code="not_found", calls=[],
                         model=None, route=None, intent=None))
    d = fake.defined
    assert d["switchboard_requests"].get(endpoint="/api/admin/faults/{model}", intent="text", status="200",
                                         error_code="none", model="other", degraded="false") == 1
    assert d["switchboard_requests"].get(endpoint="other", intent="none", status="404",
                                         error_code="not_found", model="none", degraded="false") == 1
    assert d["switchboard_model_latency_ms"].samples(model="other", status="ok") == [120.0]
    every_value = {v for m in d.values() for store in (m.values, m.observed) for key in store for _, v in key}
    assert not any("a1b2c3" in v for v in every_value)


def test_without_known_lists_values_are_capped_by_count():
    values = TagValues(cap=2)
    assert [values(v) for v in ("a", "b", "c", "a", "has space", None)] == ["a", "b", "other", "a", "other", "none"]


def test_without_the_app_s_routes_paths_are_kept_up_to_the_cap(fake):
    metrics = IngressMetrics(metrics_module=fake, count_every_s=0)
    metrics.observe(line())
    metrics.observe(line(endpoint="/has space/x", status=404, calls=[]))
    requests = fake.defined["switchboard_requests"]
    assert requests.get(endpoint="/v1/chat/completions", intent="text", status="200", error_code="none",
                        model="smollm2", degraded="false") == 1
    assert requests.get(endpoint="other", intent="text", status="404", error_code="none", model="smollm2",
                        degraded="false") == 1


def test_breakers_start_closed_and_follow_changes(fake, metrics):
    breaker = fake.defined["switchboard_breaker_state"]
    assert breaker.get(model="rapidocr") == 0
    metrics.breaker_changed("rapidocr", BreakerState.CLOSED, BreakerState.OPEN)
    assert breaker.get(model="rapidocr") == 2
    assert fake.defined["switchboard_breaker_transitions"].get(model="rapidocr", from_state="closed",
                                                               to_state="open") == 1


def test_feedback_router_version_and_the_old_request_done(fake, metrics):
    metrics.feedback("down", corrected=True)
    metrics.feedback("up", corrected=False)
    metrics.feedback("meh", corrected=False)
    metrics.router_version(7, head="model:llm")
    metrics.request_done("text", "smollm2", "ok", False)
    d = fake.defined
    assert d["switchboard_feedback"].get(rating="down", corrected="true") == 1
    assert d["switchboard_feedback"].get(rating="up", corrected="false") == 1
    assert d["switchboard_feedback"].get(rating="other", corrected="false") == 1
    assert d["switchboard_router_version"].get(head="model:llm") == 7
    assert d["switchboard_requests"].get(endpoint="other", intent="text", status="ok", error_code="none",
                                         model="smollm2", degraded="false") == 1


def test_failovers_and_committee_rules_on_plain_lines():
    assert failovers(line(calls=[call("a", "error"), call("a", "error", attempt=2), call("b")])) == [("a", "b")]
    assert failovers(line(calls=[call("a", "error"), call("b", "error"), call("c")])) == [("a", "b"), ("b", "c")]
    assert failovers(line(endpoint="/api/committee", calls=[call("a", "error"), call("b")])) == []
    assert failovers(line(calls=[call("a", "error")])) == []
    assert committee_timeouts(line(calls=[call("a", "error", blame="deadline")])) == []


def test_the_real_ray_metric_objects_accept_what_observe_records():
    """Ray's own classes (not a fake) check tag keys and types when they record, even outside a cluster."""
    metrics = IngressMetrics(models=MODELS, endpoints=ENDPOINTS)
    for _ in range(3):
        metrics.observe(line(calls=[call("smollm2", "error", blame="model"), call("smollm2-hf")], degraded=True,
                             untrusted=True))
    metrics.feedback("up", corrected=False)
    metrics.router_version(1)
    metrics.close()  # the summed counters, recorded by Ray's Counter.inc(value, tags)


def test_counters_are_summed_per_tag_set_and_recorded_in_one_call_and_histogram_values_queued(fake):
    metrics = IngressMetrics(models=MODELS, endpoints=ENDPOINTS, metrics_module=fake, count_every_s=3600)
    requests = fake.defined["switchboard_requests"]
    calls = []
    recorded = requests.inc
    requests.inc = lambda value=1.0, tags=None: (calls.append(value), recorded(value, tags))
    for _ in range(5):
        metrics.observe(line())
    metrics.observe(line(status=404, calls=[], error_code="not_found", model=None))
    tags = dict(endpoint="/v1/chat/completions", intent="text", status="200", error_code="none", model="smollm2",
                degraded="false")
    assert requests.get(**tags) == 0  # pending: nothing recorded yet
    assert fake.defined["switchboard_model_latency_ms"].samples(model="smollm2", status="ok") == []
    metrics.flush()
    assert requests.get(**tags) == 5 and sorted(calls) == [1.0, 5.0]
    assert fake.defined["switchboard_model_latency_ms"].samples(model="smollm2", status="ok") == [120.0] * 5
    assert fake.defined["switchboard_route_decisions"].get(decision="text", classifier="embedding") == 6
    metrics.flush()
    assert len(calls) == 2  # nothing pending, nothing recorded
    metrics.close()


def test_summed_counters_are_recorded_by_their_thread_and_on_close(fake):
    metrics = IngressMetrics(models=MODELS, endpoints=ENDPOINTS, metrics_module=fake, count_every_s=0.05)
    requests = fake.defined["switchboard_requests"]
    tags = dict(endpoint="/v1/chat/completions", intent="text", status="200", error_code="none", model="smollm2",
                degraded="false")
    metrics.observe(line())
    deadline = time.monotonic() + 10
    while requests.get(**tags) != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert requests.get(**tags) == 1
    metrics.observe(line())
    metrics.feedback("up", corrected=False)
    metrics.close()
    assert requests.get(**tags) == 2
    assert fake.defined["switchboard_feedback"].get(rating="up", corrected="false") == 1


# ---- the Grafana dashboard ----------------------------------------------------------------------

def exported_names(fake) -> set[str]:
    """What Prometheus sees: Ray's `ray_` prefix, counters as `_total`, histograms as buckets/sum/count."""
    names = set()
    for metric in fake.defined.values():
        base = f"ray_{metric.name}"
        if metric.kind == "counter":
            names.add(f"{base}_total")
        elif metric.kind == "histogram":
            names.update(f"{base}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            names.add(base)
    return names


def panel_exprs(dashboard: dict) -> list[str]:
    panels = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def test_the_dashboard_asks_only_for_metrics_the_ingress_defines(fake, metrics):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = panel_exprs(dashboard)
    assert exprs
    known = exported_names(fake)
    used = set()
    for expr in exprs:
        assert all(expr.count(a) == expr.count(b) for a, b in ("()", "{}", "[]")), f"unbalanced: {expr!r}"
        names = set(re.findall(r"\bray_switchboard_[a-z_]+", expr))
        assert names, f"no Switchboard metric in {expr!r}"
        assert names <= known, f"{expr!r} asks for {sorted(names - known)}"
        used |= names
    # Every metric the ingress defines has a panel.
    assert {n.rsplit("_", 1)[0] if n.endswith(("_bucket", "_sum", "_count")) else n for n in known} <= \
        {n.rsplit("_", 1)[0] if n.endswith(("_bucket", "_sum", "_count")) else n for n in used}


def test_the_dashboard_takes_its_prometheus_from_a_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_a_canary_variant_and_a_shadow_are_counted(fake, metrics):
    metrics.observe(line(variant={"flag": "canary.text", "variant": "candidate", "model": "smollm2-hf"},
                         model="smollm2-hf"))
    d = fake.defined
    assert d["switchboard_canary_requests"].get(flag="canary.text", variant="candidate", model="smollm2-hf",
                                                status="200") == 1
    assert d["switchboard_canary_latency_ms"].samples(flag="canary.text", variant="candidate") == [180.5]
    metrics.observe(line())  # no variant: nothing more
    assert d["switchboard_canary_requests"].total() == 1
    entry = {"route": "text", "shadow": {"model": "smollm2-hf", "status": "ok"}, "similarity": 0.8}
    metrics.shadow(entry)
    metrics.shadow({**entry, "shadow": {"model": "smollm2-hf", "status": "dropped"}, "similarity": None})
    assert d["switchboard_shadow_calls"].get(route="text", model="smollm2-hf", status="ok") == 1
    assert d["switchboard_shadow_calls"].get(route="text", model="smollm2-hf", status="dropped") == 1
    assert d["switchboard_shadow_similarity"].samples(route="text", model="smollm2-hf") == [0.8]


def test_histogram_values_past_the_bound_are_dropped_and_counted(fake, monkeypatch):
    from serve_app import metrics as metrics_module

    monkeypatch.setattr(metrics_module, "MAX_PENDING_VALUES", 3)
    metrics = IngressMetrics(models=MODELS, endpoints=ENDPOINTS, metrics_module=fake, count_every_s=3600)
    for _ in range(5):
        metrics.observe(line(calls=[]))  # two values each: the request's latency and the route's confidence
    assert metrics._counts.dropped == 7
    metrics.flush()
    kept = fake.defined["switchboard_request_latency_ms"].samples(endpoint="/v1/chat/completions", status="200")
    assert len(kept) == 2  # the first three values: latency, confidence, latency
    metrics.close()
