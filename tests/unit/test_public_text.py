"""What clients read of server-side failures: no internal addresses or paths (issue: an upstream's base
URL reached 503 bodies, `switchboard.failed` and the public health)."""

import pytest

from graphs.health import public_view
from vocabulary.errors import InvalidRequest, ModelError, ServiceUnavailable, error_body
from vocabulary.public_text import scrub


@pytest.mark.parametrize("text, hidden", [
    ("upstream http://10.0.0.5:8001/v1 failed: ConnectError", "10.0.0.5"),
    ("vision upstream https://ocr.internal.example:8443/v1 timed out", "ocr.internal.example"),
    ("upstream returned 500: boom at 192.168.1.20:9000", "192.168.1.20"),
    ("connect [fd00::5]:8080 refused", "fd00::5"),
    ("fe80::1%eth0 down", "fe80::1"),
    ("2001:db8:0:0:0:0:0:1 unreachable", "2001:db8"),
    ("localhost:8001 refused the connection", "8001"),
    ("deployment DEPLOY_FAILED: model path does not exist: /srv/models/smollm2.gguf", "/srv/models"),
])
def test_addresses_and_paths_are_replaced(text, hidden):
    out = scrub(text)
    assert hidden not in out and "<" in out


@pytest.mark.parametrize("text", ["smollm2: circuit open, next probe in 27.2s", "ratio 3:4 at 12:30:45",
                                  "version 1.2.3.4.5 of Class::method", "whisper model is not loaded"])
def test_ordinary_text_is_left_alone(text):
    assert scrub(text) == text


def test_server_side_error_bodies_are_scrubbed_and_client_errors_are_not():
    down = ServiceUnavailable("llm: no model could answer: smollm2-upstream: upstream http://10.1.2.3:8001/v1 "
                              "failed: ConnectError")
    assert "10.1.2.3" not in error_body(down)["error"]["message"]
    assert "smollm2-upstream" in error_body(down)["error"]["message"]
    assert "10.1.2.3" not in error_body(ModelError("upstream http://10.1.2.3:8001/v1 failed"))["error"]["message"]
    mine = InvalidRequest("fetching from 127.0.0.1 (127.0.0.1) is not allowed", param="messages")  # the client's own
    assert error_body(mine)["error"]["message"] == mine.message


def test_the_public_health_gives_a_reason_class_and_no_error_text():
    report = {"status": "degraded", "routes": {"llm": "ok"}, "models": {
        "up": {"route": "llm", "status": "ok", "latency_ms": 3.0, "error": None, "breaker": "closed",
               "failures_in_window": 0},
        "remote": {"route": "llm", "status": "error", "latency_ms": 1.0,
                   "error": "ModelError: upstream http://10.9.9.9:8001/v1 unreachable: ConnectError"},
        "slow": {"route": "llm", "status": "error", "latency_ms": 5000.0, "error": "no answer within 5.0s"},
        "ghost": {"route": "llm", "status": "error", "latency_ms": 1.0, "probe_error": "x /srv/m.gguf",
                  "error": "deployment DEPLOY_FAILED: model path does not exist: /srv/m.gguf",
                  "deployment": {"status": "DEPLOY_FAILED", "message": "/srv/m.gguf"}}}}
    public = public_view(report)
    assert {n: m["reason"] for n, m in public["models"].items()} == {
        "up": None, "remote": "ModelError", "slow": "timeout", "ghost": "deployment_failed"}
    assert "10.9.9.9" not in str(public) and "/srv" not in str(public)
    assert public["models"]["up"] == {"route": "llm", "status": "ok", "latency_ms": 3.0, "breaker": "closed",
                                      "failures_in_window": 0, "reason": None}
    assert public["status"] == "degraded" and report["models"]["remote"]["error"].startswith("ModelError")
