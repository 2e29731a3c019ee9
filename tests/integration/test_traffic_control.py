"""Traffic control on the real app: overload is shed at once, not queued without bound (a model whose
queue, Serve's max_queued_requests, is full answers 503 `overloaded` with retry-after while the
requests it took are still running); client keys let in only who has one, and a key past its requests
or tokens per minute gets 429 with retry-after. Every refusal has its line in the request log, with
the key's name and hash, never the key.

This module deploys a second app beside the session's, under /traffic, with one LLM (the real
llama.cpp server behind the upstream backend) that takes one request at a time and queues one more,
and client keys from a file; it deletes the app at the end."""

import json
import threading
import time
import uuid

import httpx
import pytest

from tests.integration.conftest import roster_config, wait_until
from tests.integration.request_lines import the_line

pytestmark = pytest.mark.integration

PREFIX = "/traffic"
AT_ONCE = 6  # one runs, one waits, the others are shed
LOADER = "loader-key-00000000000000"  # no limits
LIMITED = "limited-key-0000000000000"  # two requests a minute
FRUGAL = "frugal-key-00000000000000"  # 20 tokens a minute


def traffic_config(upstream_url: str, router_dir: str, log_dir: str, keys_file: str) -> dict:
    config = roster_config(upstream_url, router_dir, log_dir)
    upstream = next(m for m in config["models"] if m["name"] == "smollm2-upstream")
    config["models"] = [{**upstream, "max_ongoing_requests": 1, "max_queued_requests": 1}]
    config["routes"] = {"text": ["smollm2-upstream"]}
    config["client_keys"] = {"file": keys_file, "env": "SWITCHBOARD_TEST_NO_KEYS"}
    config.pop("voice_aliases")
    return config


@pytest.fixture(scope="module")
def traffic(ray_serve, llama_server, router_dir, tmp_path_factory):
    from ray import serve

    from serve_app.builder import build_app

    log_dir = tmp_path_factory.mktemp("traffic-log")
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "loader", "key": LOADER},
                                         {"name": "limited", "key": LIMITED, "rpm": 2},
                                         {"name": "frugal", "key": FRUGAL, "tpm": 20}]}))
    serve.run(build_app(traffic_config(llama_server, str(router_dir), str(log_dir), str(keys))), name="traffic",
              route_prefix=PREFIX)
    url = f"{ray_serve}{PREFIX}"
    try:
        wait_until(lambda: httpx.get(f"{url}/api/health/live", timeout=5).status_code == 200, 120, "traffic app")
        yield url, log_dir
    finally:
        serve.delete("traffic")


def chat(url: str, key: str | None, request_id: str, max_tokens: int = 4) -> httpx.Response:
    headers = {"x-request-id": request_id, **({"authorization": f"Bearer {key}"} if key else {})}
    return httpx.post(f"{url}/v1/chat/completions", timeout=120, headers=headers, json={
        "model": "smollm2-upstream", "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": "Count from 1 to 30, one number per line."}]})


def rid() -> str:
    return f"traffic-{uuid.uuid4().hex[:8]}"


def test_a_full_queue_sheds_at_once_with_503_and_retry_after(traffic):
    url, log_dir = traffic
    results: dict[str, tuple[httpx.Response, float]] = {}
    start = threading.Barrier(AT_ONCE)

    def ask(request_id: str) -> None:
        start.wait()
        r = chat(url, LOADER, request_id, max_tokens=40)
        results[request_id] = (r, time.monotonic())

    ids = [rid() for _ in range(AT_ONCE)]
    threads = [threading.Thread(target=ask, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert len(results) == AT_ONCE
    answered = {i: at for i, (r, at) in results.items() if r.status_code == 200}
    shed = {i: at for i, (r, at) in results.items() if r.status_code == 503}
    assert len(answered) + len(shed) == AT_ONCE, {i: r.text for i, (r, _) in results.items()}
    assert 1 <= len(answered) <= 2 and len(shed) >= AT_ONCE - 2, {i: r.status_code for i, (r, _) in results.items()}
    for i in shed:
        r = results[i][0]
        assert r.json()["error"]["code"] == "overloaded" and r.headers["retry-after"] == "1", r.text
    # Shed at once: every refusal was out before the first answer was complete.
    assert max(shed.values()) < min(answered.values())
    for i in shed:
        line = the_line(log_dir, i)
        assert line["status"] == 503 and line["error_code"] == "overloaded"
        assert [c["status"] for c in line["calls"]] == ["error"], line["calls"]


def test_only_clients_with_a_key_get_in(traffic):
    url, log_dir = traffic
    for key, why in ((None, "no API key"), ("guess-key-000000000000000", "not valid")):
        request_id = rid()
        r = chat(url, key, request_id)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
        assert why in r.json()["error"]["message"]
        line = the_line(log_dir, request_id)
        assert line["status"] == 401 and line["calls"] == [] and line["client"] is None
    assert httpx.get(f"{url}/api/health/live", timeout=10).status_code == 200  # health needs no key


def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(traffic):
    url, log_dir = traffic
    ids = [rid() for _ in range(3)]
    answers = [chat(url, LIMITED, i) for i in ids]
    assert [r.status_code for r in answers] == [200, 200, 429], [r.text for r in answers]
    refused = answers[2]
    assert refused.json()["error"]["type"] == "rate_limit_error" and 1 <= int(refused.headers["retry-after"]) <= 60
    line = the_line(log_dir, ids[2])
    assert line["status"] == 429 and line["error_code"] == "rate_limit_exceeded" and line["calls"] == []
    assert line["client"]["name"] == "limited" and len(line["client"]["key"]) == 12
    assert LIMITED not in json.dumps(line) and LIMITED[:12] not in json.dumps(line)  # the hash, not the key
    assert chat(url, LOADER, rid()).status_code == 200  # another key is not held back


def test_a_key_over_its_tokens_per_minute_gets_429(traffic):
    url, log_dir = traffic
    first = chat(url, FRUGAL, rid(), max_tokens=16)
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] > 20  # the prompt counts too
    request_id = rid()
    refused = chat(url, FRUGAL, request_id)
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert the_line(log_dir, request_id)["client"]["name"] == "frugal"
