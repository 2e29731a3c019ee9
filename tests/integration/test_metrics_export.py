"""The metrics on the real service, as Prometheus gets them: scrape the node's metrics export (Ray's
metrics agent, `ray_` prefix) and see the request counter and the model-latency histogram move as
requests flow, and the failure counters move when a model fails. Ray's workers report every
`metrics_report_interval_ms` (10 s by default), so each check polls the scrape until the values move."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ADMIN_TOKEN, wait_until

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
REPORT_WAIT_S = 60  # several report intervals
CHAT = "/v1/chat/completions"


def scrape(url: str) -> list[tuple[str, dict, float]]:
    text = httpx.get(url, timeout=10).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples, name: str, **labels) -> float:
    """The sum over every series of `name` (all ingress replicas) whose labels include `labels`."""
    return sum(value for n, got, value in samples if n == name and labels.items() <= got.items())


def moved(url: str, expected: dict[tuple, float]):
    """The scrape, once every (name, labels) sum has reached its expected value; else None."""
    samples = scrape(url)
    return samples if all(total(samples, name, **dict(labels)) >= want
                          for (name, labels), want in expected.items()) else None


def chat(base: str, text: str, model: str = "smollm2") -> dict:
    r = httpx.post(f"{base}{CHAT}", timeout=120, json={
        "model": model, "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.json()


def test_requests_and_model_latency_move_as_requests_flow(switchboard, metrics_url):
    requests = ("ray_switchboard_requests_total",
                (("endpoint", CHAT), ("status", "200"), ("model", "smollm2")))
    calls = ("ray_switchboard_model_latency_ms_count", (("model", "smollm2"), ("status", "ok")))
    slow_or_fast = ("ray_switchboard_model_latency_ms_bucket", (("model", "smollm2"), ("status", "ok"), ("le", "+Inf")))
    before = scrape(metrics_url)
    start = {key: total(before, key[0], **dict(key[1])) for key in (requests, calls, slow_or_fast)}

    sent = 3
    for i in range(sent):
        assert chat(switchboard, f"Count to {i + 2}.")["model"] == "smollm2"

    after = wait_until(lambda: moved(metrics_url, {key: value + sent for key, value in start.items()}),
                       REPORT_WAIT_S, "the requests counter and the model-latency histogram in the scrape",
                       interval_s=1)
    assert total(after, *requests[:1], **dict(requests[1])) >= start[requests] + sent
    # The histogram is whole: every observation is in the +Inf bucket, buckets never decrease with `le`.
    assert total(after, calls[0], **dict(calls[1])) == total(after, slow_or_fast[0], **dict(slow_or_fast[1]))
    buckets = sorted((float(labels["le"]), value) for name, labels, value in after
                     if name == slow_or_fast[0] and labels.get("model") == "smollm2" and labels.get("status") == "ok")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert {"deployment", "replica", "application"} <= next(
        labels for name, labels, _ in after if name == requests[0]).keys()  # Serve's own tags, added by Ray


def test_a_failing_model_moves_the_error_and_failover_counters(switchboard, metrics_url):
    errors = ("ray_switchboard_model_errors_total", (("model", "smollm2"),))
    failovers = ("ray_switchboard_failovers_total", (("from_model", "smollm2"),))
    before = scrape(metrics_url)
    start = {key: total(before, key[0], **dict(key[1])) for key in (errors, failovers)}
    with httpx.Client(base_url=switchboard, timeout=30) as http:
        assert http.put("/api/admin/faults/smollm2", headers=AUTH, json={"error_rate": 1.0}).status_code == 200
        try:
            answer = chat(switchboard, "Name one colour.", model="auto")
        finally:
            http.delete("/api/admin/faults/smollm2", headers=AUTH)
            http.post("/api/admin/breakers/smollm2/reset", headers=AUTH)
    assert answer["model"] != "smollm2"
    wait_until(lambda: moved(metrics_url, {key: value + 1 for key, value in start.items()}),
               REPORT_WAIT_S, "the model-error and failover counters in the scrape", interval_s=1)
