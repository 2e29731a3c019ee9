"""The request log on the real service: exactly one line per request for every endpoint and
outcome, personal data redacted before it is written, feedback tied to a logged request, and the
lines of finished answers surviving an ingress replica killed mid-stream."""

import json
import os
import signal
import uuid

import httpx
import openai
import pytest

from serve_app.request_log.reader import read_feedback
from tests.integration.conftest import ADMIN_TOKEN, wait_until
from tests.integration.request_lines import lines_for, the_line

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"




def test_an_openai_client_chat_is_one_full_line(switchboard, request_log_dir):
    rid = new_id("log-chat")
    client = openai.OpenAI(base_url=f"{switchboard}/v1", api_key="none", max_retries=0)
    answer = client.chat.completions.create(model="smollm2", extra_headers={"x-request-id": rid},
                                            messages=[{"role": "user", "content": "Say hello to the sea."}])
    line = the_line(request_log_dir, rid)
    assert line["status"] == 200 and line["error_code"] is None and line["endpoint"] == "/v1/chat/completions"
    assert line["model"] == "smollm2" and line["intent"] == "text" and line["degraded"] is False
    assert line["route"]["decision"] == "text" and line["route"]["classifier"] == "model"
    (call,) = line["calls"]
    assert call["model"] == "smollm2" and call["status"] == "ok" and call["attempt"] == 1
    assert call["tokens_out"] == answer.usage.completion_tokens and call["tokens_in"] == answer.usage.prompt_tokens
    assert call["output_length"] == len(answer.choices[0].message.content)
    assert call["breaker_state"] == "closed" and call["latency_ms"] > 0
    assert line["excerpt"] == "Say hello to the sea." and line["input_chars"] == len("Say hello to the sea.")
    assert line["deadline_ms"] == 60_000 and 0 < line["total_ms"] < 60_000 and line["stream"] is False


def test_a_stream_and_a_failover_are_logged_with_every_call(switchboard, request_log_dir):
    rid = new_id("log-failover")
    with httpx.Client(base_url=switchboard, timeout=120) as http:
        http.put("/api/admin/faults/smollm2", headers=AUTH, json={"error_rate": 1.0})
        try:
            text = ""
            with http.stream("POST", "/v1/chat/completions", headers={"x-request-id": rid}, json={
                    "model": "auto", "stream": True, "max_tokens": 4,
                    "messages": [{"role": "user", "content": "Tell me a fact about rivers."}]}) as r:
                assert r.status_code == 200
                text = r.read().decode()
        finally:
            http.delete("/api/admin/faults/smollm2", headers=AUTH)
            http.post("/api/admin/breakers/smollm2/reset", headers=AUTH)
    assert text.endswith("data: [DONE]\n\n")
    line = the_line(request_log_dir, rid)
    assert line["stream"] is True and line["status"] == 200 and line["degraded"] is True
    assert [c["model"] for c in line["calls"]][:2] == ["smollm2", "smollm2"]  # the injected error was retried
    assert line["calls"][0]["status"] == "error" and "injected fault" in line["calls"][0]["error"]
    assert line["calls"][0]["blame"] == "model" and line["calls"][1]["attempt"] == 2
    answered = line["calls"][-1]
    assert answered["status"] == "ok" and answered["model"] == line["model"] != "smollm2"
    assert answered["tokens_out"] and answered["output_length"] is not None
    assert line["failovers"] == 2 and line["failed"] == ["smollm2"]
    assert line["route"]["classifier"] in ("ngram-logreg", "minilm-logreg") and isinstance(line["route"]["head_version"], int)


@pytest.mark.parametrize("case", ["bad_json", "not_found", "too_large", "deadline", "native", "live"])
def test_every_endpoint_and_outcome_has_its_line(switchboard, request_log_dir, case):
    rid = new_id(f"log-{case}")
    headers = {"x-request-id": rid}
    with httpx.Client(base_url=switchboard, timeout=60) as http:
        if case == "bad_json":
            r = http.post("/v1/chat/completions", headers={**headers, "content-type": "application/json"},
                          content=b"{not json")
            expected = (400, "invalid_request")
        elif case == "not_found":
            r = http.get("/v1/nothing-here", headers=headers)
            expected = (404, "not_found")
        elif case == "too_large":
            r = http.post("/v1/chat/completions", headers={**headers, "content-type": "application/json"},
                          content=b" " * 3_100_000)
            expected = (413, "payload_too_large")
        elif case == "deadline":
            r = http.post("/v1/chat/completions", headers={**headers, "x-switchboard-deadline-ms": "1"},
                          json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]})
            expected = (r.status_code, r.json()["error"]["code"])
            assert r.status_code in (400, 504)
        elif case == "native":
            r = http.post("/api/search", headers=headers, json={"query": "circuit breaker cooldown"})
            expected = (200, None)
        else:
            r = http.get("/api/health/live", headers=headers)
            expected = (200, None)
    assert (r.status_code, None if r.status_code < 400 else r.json()["error"]["code"]) == expected
    line = the_line(request_log_dir, rid)
    assert (line["status"], line["error_code"]) == expected
    if case == "native":
        assert line["excerpt"] == "circuit breaker cooldown" and line["model"] in ("web", "local")
        assert [c["model"] for c in line["calls"] if c["status"] == "ok"] == [line["model"]]


def test_personal_data_never_reaches_the_log(switchboard, request_log_dir):
    rid = new_id("log-pii")
    secret = {"name": "Margaret Thornbury", "email": "margaret.thornbury@example.org", "phone": "+44 20 7946 0958"}
    text = (f"Hi, I am {secret['name']}. Write to {secret['email']} or call {secret['phone']} "
            "about my order.")
    with httpx.Client(base_url=switchboard, timeout=120) as http:
        r = http.post("/v1/chat/completions", headers={"x-request-id": rid},
                      json={"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200
        fb = http.post("/api/feedback", json={"request_id": rid, "rating": "down",
                                              "comment": f"{secret['name']} here, mail {secret['email']}"})
        assert fb.status_code == 200, fb.text
    line = the_line(request_log_dir, rid)
    assert {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"} <= set(line["pii"]), line
    assert "<PERSON>" in line["excerpt"] and "<EMAIL_ADDRESS>" in line["excerpt"]
    everything = "".join(p.read_text() for p in request_log_dir.iterdir() if p.is_file())
    for value in (*secret.values(), "Thornbury", "7946 0958"):
        assert value not in everything, value


def test_feedback_needs_a_logged_request_and_is_stored(switchboard, request_log_dir):
    rid = new_id("log-feedback")
    with httpx.Client(base_url=switchboard, timeout=60) as http:
        r = http.post("/api/classify", headers={"x-request-id": rid},
                      json={"messages": [{"role": "user", "content": "Read this receipt aloud for me"}]})
        assert r.status_code == 200
        unknown = http.post("/api/feedback", json={"request_id": new_id("never-sent"), "rating": "up"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_request_id"
        bad_model = http.post("/api/feedback", json={"request_id": rid, "rating": "down",
                                                     "correction": {"model": "gpt-17"}})
        assert bad_model.status_code == 400 and bad_model.json()["error"]["param"] == "correction.model"
        bad_field = http.post("/api/feedback", json={"request_id": rid, "rating": "meh"})
        assert bad_field.status_code == 400
        ok = http.post("/api/feedback", json={"request_id": rid, "rating": "down",
                                              "correction": {"intent": "voice", "model": "kokoro"}})
        assert ok.status_code == 200 and ok.json() == {"stored": True, "request_id": rid}
    (stored,) = [f for f in read_feedback(request_log_dir) if f["request_id"] == rid]
    assert stored["rating"] == "down" and stored["correction"] == {"intent": "voice", "model": "kokoro"}


def ingress_pids() -> set[int]:
    """The test cluster's ingress replicas: processes under this one (Ray started here) that Ray
    titled after the ingress deployment."""
    import psutil

    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "ServeReplica:switchboard:ingress" in " ".join(proc.cmdline()):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_a_killed_ingress_replica_leaves_one_whole_line_per_answer(switchboard, request_log_dir):
    """Streams run while the ingress replica is killed: every stream that reached [DONE] has
    exactly one line, and every line of every file is whole JSON."""
    import concurrent.futures

    (pid,) = ingress_pids()
    ids = [new_id(f"log-crash-{n}") for n in range(6)]

    def stream(rid: str) -> bool:
        try:
            with httpx.Client(base_url=switchboard, timeout=60) as http:
                with http.stream("POST", "/v1/chat/completions", headers={"x-request-id": rid}, json={
                        "model": "smollm2", "stream": True, "max_tokens": 64 if rid[-1] in "024" else 2,
                        "messages": [{"role": "user", "content": "Count from one to fifty in words."}]}) as r:
                    return r.status_code == 200 and r.read().decode().endswith("data: [DONE]\n\n")
        except httpx.HTTPError:
            return False

    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        futures = {rid: pool.submit(stream, rid) for rid in ids}
        # kill once some answer is complete (its line is in the file) and others still stream
        wait_until(lambda: any(lines_for(request_log_dir, rid) for rid in ids), 60, "a finished stream")
        os.kill(pid, signal.SIGKILL)
        finished = {rid for rid, f in futures.items() if f.result()}
    assert finished, "no stream finished before the kill"
    for rid in ids:
        count = len(lines_for(request_log_dir, rid))
        assert count == (1 if rid in finished else count) and count <= 1, (rid, count)
    for path in request_log_dir.glob("requests-*.jsonl*"):
        raw = path.read_bytes()
        assert not raw or raw.endswith(b"\n"), path
        for text in raw.splitlines():
            json.loads(text)
    # Serve replaces the replica; the rest of the suite needs it
    wait_until(lambda: ingress_pids() - {pid}, 120, "a new ingress replica")
    wait_until(lambda: httpx.get(f"{switchboard}/api/health/live", timeout=5).status_code == 200, 120,
               "the ingress answering again")
