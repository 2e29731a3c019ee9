"""Structured logs: one JSON line per request with its id, and rejected payloads logged."""

import glob
import json
import os

import httpx
import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def ingress_log_lines():
    pattern = os.path.join(os.environ["RAY_TMPDIR"], "**", "session_latest", "logs", "serve",
                           "replica_switchboard_ingress_*.log")
    lines = []
    for path in glob.glob(pattern, recursive=True):
        with open(path) as f:
            lines += [json.loads(line) for line in f if line.startswith("{")]
    return lines


def test_request_done_is_a_json_line_with_the_request_id(switchboard):
    r = httpx.post(f"{switchboard}/v1/chat/completions", headers={"x-request-id": "log-probe-123"}, timeout=60,
                   json={"model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    line = wait_until(lambda: next((entry for entry in ingress_log_lines()
                                    if entry.get("request_id") == "log-probe-123"
                                    and entry.get("message") == "request done"), None), 30, "log line")
    assert line["model"] == "smollm2" and line["outcome"] == "ok" and line["latency_ms"] > 0


def test_rejected_request_is_logged_with_its_payload(switchboard):
    r = httpx.post(f"{switchboard}/v1/chat/completions", headers={"x-request-id": "log-probe-bad"}, timeout=60,
                   json={"model": "smollm2", "messages": [], "note": "A" * 5000})
    assert r.status_code == 400
    line = wait_until(lambda: next((entry for entry in ingress_log_lines()
                                    if entry.get("request_id") == "log-probe-bad"), None), 30, "log line")
    assert line["message"] == "request rejected" and line["status"] == 400
    assert "5000 chars" in json.dumps(line)  # the long field is shortened, not dropped
