"""Two ingress replicas agree (serve_app/shared_state): a breaker opened by failures that the two
replicas saw between them is open on both, and closed by hand through one it closes on both; a fault
injected or cleared through one replica holds on both; flags written through one are in force on both.

This module deploys a second app beside the session's, under /fleet, with two ingress replicas and two
models: the real llama.cpp server (upstream backend) and `broken`, the same server behind a small
forwarder in this process that, once the app is up, answers every chat with a 500 (a model failing on
demand, which the real server cannot be made to do). Every request is load-balanced by Serve; which replica answered is in `x-switchboard-replica`."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.integration.conftest import ADMIN_TOKEN, free_port, roster_config, wait_until

pytestmark = pytest.mark.integration

PREFIX = "/fleet"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
THRESHOLD = 4  # failures that open a breaker: reached only by the two replicas' failures together
LOOKS = 24  # GETs that see both replicas (Serve balances them; 2^-23 to see only one)


class BreakableUpstream(BaseHTTPRequestHandler):
    """Forwards to the real llama.cpp server until `broken` is set; then every chat is a 500 (model
    listings still answer, so the deployment stays healthy and only calls fail)."""

    target = ""
    broken = threading.Event()

    def do_GET(self):  # noqa: N802
        self._forward("GET", None)

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.broken.is_set():
            raw = json.dumps({"error": {"message": "the broken upstream fails every chat",
                                        "type": "server_error"}}).encode()
            self.send_response(500)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self._forward("POST", body)

    def _forward(self, method: str, body: bytes | None) -> None:
        with httpx.stream(method, f"{self.target}{self.path}", content=body, timeout=60,
                          headers={"content-type": self.headers.get("content-type") or "application/json"}) as r:
            self.send_response(r.status_code)
            self.send_header("content-type", r.headers.get("content-type", "application/json"))
            self.send_header("connection", "close")  # HTTP/1.0: the body ends when the connection does
            self.end_headers()
            for chunk in r.iter_raw():
                self.wfile.write(chunk)
                self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def breakable_upstream(llama_server):
    BreakableUpstream.target = llama_server.removesuffix("/v1")
    BreakableUpstream.broken.clear()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), BreakableUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def fleet_config(upstream_url: str, broken_url: str, router_dir: str, log_dir: str, flags_file: str) -> dict:
    config = roster_config(upstream_url, router_dir, log_dir, flags_file)
    upstream = next(m for m in config["models"] if m["name"] == "smollm2-upstream")
    broken = {**upstream, "name": "broken", "backend": {**upstream["backend"], "base_url": broken_url}}
    config["models"] = [upstream, broken]
    config["routes"] = {"text": ["smollm2-upstream"]}
    config["ingress"] = {"resources": {"num_cpus": 0.05}, "autoscaling": {"min_replicas": 2, "max_replicas": 2}}
    config["resilience"] = {"breaker": {"failure_threshold": THRESHOLD, "window_s": 120, "cooldown_s": 300},
                            "retry": {"retries": 0}}
    config.pop("voice_aliases")
    return config


@pytest.fixture(scope="module")
def fleet(ray_serve, llama_server, breakable_upstream, router_dir, tmp_path_factory):
    from ray import serve

    from serve_app.builder import build_app

    log_dir = tmp_path_factory.mktemp("fleet-log")
    flags = tmp_path_factory.mktemp("fleet-flags") / "flags.json"
    serve.run(build_app(fleet_config(llama_server, breakable_upstream, str(router_dir), str(log_dir), str(flags))),
              name="fleet", route_prefix=PREFIX)
    url = f"{ray_serve}{PREFIX}"
    try:
        wait_until(lambda: len(replicas_seen(url)) == 2, 120, "two ingress replicas")
        BreakableUpstream.broken.set()
        yield url
    finally:
        serve.delete("fleet")


def look(url: str, path: str) -> list[tuple[str, dict]]:
    """(replica, body) of LOOKS admin GETs of `path`."""
    seen = []
    with httpx.Client(timeout=10, headers=AUTH) as client:
        for _ in range(LOOKS):
            r = client.get(f"{url}{path}")
            assert r.status_code == 200, r.text
            seen.append((r.headers["x-switchboard-replica"], r.json()))
    return seen


def replicas_seen(url: str) -> set[str]:
    return {replica for replica, _ in look(url, "/api/admin/breakers")}


def on_every_replica(url: str, path: str, holds) -> bool:
    seen = look(url, path)
    return len({replica for replica, _ in seen}) == 2 and all(holds(body) for _, body in seen)


def chat(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=60,
                      headers={"x-request-id": f"fleet-{uuid.uuid4().hex[:8]}"},
                      json={"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})


def test_failures_seen_by_both_replicas_open_the_breaker_on_both_and_a_reset_closes_both(fleet):
    for _ in range(THRESHOLD):
        r = chat(fleet, "broken")
        assert r.status_code == 200, r.text  # the route's model answered after `broken` failed
    # Whichever way Serve split the 4 failures, neither replica saw 4 of its own unless it got all
    # of them; every replica must still find the breaker open.
    wait_until(lambda: on_every_replica(fleet, "/api/admin/breakers", lambda b: b["broken"]["breaker"] == "open"),
               10, "the broken model's breaker open on both replicas", interval_s=0.5)
    assert on_every_replica(fleet, "/api/admin/breakers", lambda b: b["smollm2-upstream"]["breaker"] == "closed")
    r = httpx.post(f"{fleet}/api/admin/breakers/broken/reset", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["breaker"] == "closed"
    wait_until(lambda: on_every_replica(fleet, "/api/admin/breakers", lambda b: b["broken"]["breaker"] == "closed"),
               10, "the reset reaching both replicas", interval_s=0.5)


def test_a_fault_injected_through_one_replica_holds_on_both(fleet):
    fault = {"latency_ms": 5}
    r = httpx.put(f"{fleet}/api/admin/faults/smollm2-upstream", headers=AUTH, json=fault, timeout=10)
    assert r.status_code == 200 and r.json()["shared"] is True
    try:
        wait_until(lambda: on_every_replica(fleet, "/api/admin/faults",
                                            lambda b: b.get("smollm2-upstream", {}).get("latency_ms") == 5),
                   10, "the fault on both replicas", interval_s=0.5)
    finally:
        r = httpx.delete(f"{fleet}/api/admin/faults/smollm2-upstream", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["shared"] is True
    wait_until(lambda: on_every_replica(fleet, "/api/admin/faults", lambda b: "smollm2-upstream" not in b),
               10, "the fault cleared on both replicas", interval_s=0.5)


def test_flags_written_through_one_replica_are_in_force_on_both(fleet):
    body = {"flags": {"committee.enabled": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                            "defaultVariant": "off"}}}
    r = httpx.put(f"{fleet}/api/flags", headers=AUTH, json=body, timeout=10)
    assert r.status_code == 200, r.text
    wait_until(lambda: on_every_replica(fleet, "/api/flags",
                                        lambda b: b["flags"].get("committee.enabled", {}).get("value") is False),
               10, "the flags on both replicas", interval_s=0.5)
