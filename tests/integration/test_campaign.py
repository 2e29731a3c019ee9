"""Conditional faults and a failure campaign on the real service: a fault that fires only for one
topic fails that topic over (the named model first, then its chain) and leaves the rest alone; `switchboard campaign` sets its faults, replays
a request set, puts the faults back and writes the exemplars the failures caused."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.integration.conftest import ADMIN_TOKEN, ROOT

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
TOPIC = r"(?i)\b(volcan\w*|lava|magma)\b"


def chat(http: httpx.Client, text: str) -> httpx.Response:
    r = http.post("/v1/chat/completions", json={"model": "smollm2", "max_tokens": 2, "temperature": 0,
                                                "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r


@pytest.fixture
def http(switchboard):
    with httpx.Client(base_url=switchboard, timeout=120) as client:
        yield client
        client.delete("/api/admin/faults/smollm2", headers=AUTH)
        client.post("/api/admin/breakers/smollm2/reset", headers=AUTH)


def test_a_conditional_fault_fires_only_for_matching_requests(http):
    r = http.put("/api/admin/faults/smollm2", headers=AUTH, json={"error_rate": 1.0, "when": {"text_regex": TOPIC}})
    assert r.status_code == 200, r.text
    hot = chat(http, "Why do volcanoes erupt?")
    assert hot.headers["x-switchboard-failed"] == "smollm2" and hot.headers["x-switchboard-model"] != "smollm2"
    calm = chat(http, "Name a river in France.")
    assert calm.headers["x-switchboard-model"] == "smollm2" and calm.headers["x-switchboard-degraded"] == "false"
    assert http.get("/api/admin/faults", headers=AUTH).json()["smollm2"]["when"]["text_regex"] == TOPIC


@pytest.mark.parametrize("when", [{"text_regex": "(unclosed"}, {"intents": ["poetry"]}, {},
                                  {"min_contrast": 0.9, "max_contrast": 0.1}])
def test_a_bad_condition_is_refused(http, when):
    r = http.put("/api/admin/faults/smollm2", headers=AUTH, json={"error_rate": 1.0, "when": when})
    assert 400 <= r.status_code < 500 and "when" in r.text
    assert "smollm2" not in http.get("/api/admin/faults", headers=AUTH).json()


def test_a_campaign_replays_restores_and_writes_its_exemplars(switchboard, request_log_dir, tmp_path, http):
    requests = tmp_path / "requests.jsonl"
    # the others first: two topic requests fail three times, which opens smollm2's breaker for everyone
    texts = [("other", "Name a colour."), ("other", "Say a number."), ("topic", "How hot is lava?"),
             ("topic", "Where is the biggest volcano?")]
    requests.write_text("".join(json.dumps({"tag": tag, "body": {
        "model": "smollm2", "max_tokens": 2, "temperature": 0, "messages": [{"role": "user", "content": text}]}}) + "\n"
        for tag, text in texts))
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"model": "smollm2", "fault": {"error_rate": 1.0, "when": {"text_regex": TOPIC}}}]))
    out = tmp_path / "exemplars.jsonl"
    run = subprocess.run([sys.executable, "-m", "serve_app.cli", "campaign", "--url", switchboard, "--requests",
                          str(requests), "--faults", str(faults), "--log-dir", str(request_log_dir), "--out", str(out),
                          "--concurrency", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN})
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["faults_restored"] is True and summary["log_lines_missing"] == 0
    assert summary["tag:topic"]["statuses"] == {"200": 2} and summary["tag:topic"]["faulted_model_failed"] == 2
    assert summary["tag:other"]["faulted_model_failed"] == 0
    assert "smollm2" not in http.get("/api/admin/faults", headers=AUTH).json()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    failovers = [r for r in rows if r["mistake"]["kind"] == "failover"]
    assert {r["context"]["excerpt"] for r in failovers} == {"How hot is lava?", "Where is the biggest volcano?"}
    assert all(r["mistake"]["model"] == "smollm2" and r["fix"]["model"] != "smollm2" for r in failovers)
