"""Feature flags, canaries and shadows on the real app: a model turned off in the flags file leaves
routing within 5 s, without a restart, and comes back; a file that fails validation changes nothing; a
10 % canary lands on about 10 % of sessions and each session stays on its variant; a shadow model that
errors or hangs never changes the user's answer or status, and is never waited for. The session app
reads its flags file every 0.5 s (its shadow calls time out after 5 s); each test leaves it empty."""

import json
import time
import uuid
from collections import Counter
from datetime import datetime

import httpx
import pytest

from tests.integration.conftest import ADMIN_TOKEN, wait_until
from serve_app.request_log.reader import read_shadow
from tests.integration.request_lines import the_line

pytestmark = pytest.mark.integration

AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
OFF = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
WITHIN_S = 5  # the promise: a change to the file reaches every replica this fast


@pytest.fixture
def http(switchboard, flags_file):
    with httpx.Client(base_url=switchboard, timeout=120) as c:
        yield c
    flags_file.write_text(json.dumps({"flags": {}}))
    wait_until(lambda: httpx.get(f"{switchboard}/api/flags", timeout=10).json()["flags"] == {}, WITHIN_S, "no flags")


def chat(http, model="smollm2", **headers):
    return http.post("/v1/chat/completions", headers=headers, json={
        "model": model, "max_tokens": 1, "temperature": 0, "messages": [{"role": "user", "content": "Say hi"}]})


def answered_by(http) -> str:
    r = chat(http)
    assert r.status_code == 200, r.text
    return r.headers["x-switchboard-model"]


def test_a_model_turned_off_in_the_file_leaves_routing_within_5_s_and_comes_back(http, flags_file):
    assert answered_by(http) == "smollm2"
    flags_file.write_text(json.dumps({"flags": {"models.smollm2.enabled": OFF}}))  # as an operator would
    wait_until(lambda: answered_by(http) != "smollm2", WITHIN_S, "smollm2 out of routing")
    r = chat(http)
    assert r.headers["x-switchboard-model"] == "smollm2-hf" and "turned off" in json.dumps(r.json()["switchboard"])
    shown = http.get("/api/flags").json()
    assert shown["flags"]["models.smollm2.enabled"]["value"] is False and shown["last_error"] is None
    flags_file.write_text(json.dumps({"flags": {"models.smollm2.enabled": {**OFF, "defaultVariant": "on"}}}))
    wait_until(lambda: answered_by(http) == "smollm2", WITHIN_S, "smollm2 back in routing")


def test_a_flags_file_that_fails_validation_keeps_the_last_good_flags(http, flags_file):
    flags_file.write_text(json.dumps({"flags": {"models.smollm2.enabled": OFF}}))
    wait_until(lambda: answered_by(http) != "smollm2", WITHIN_S, "smollm2 out of routing")
    version = http.get("/api/flags").json()["version"]
    flags_file.write_text('{"flags": {"models.smollm2.enabled": ')  # a half-written file
    wait_until(lambda: http.get("/api/flags").json()["last_error"], WITHIN_S, "the refusal")
    assert http.get("/api/flags").json()["version"] == version and answered_by(http) == "smollm2-hf"
    # Through the API: refused with the reason, nothing written; the admin token is needed.
    bad = {"flags": {"models.ghost.enabled": OFF}}
    assert http.put("/api/flags", json=bad).status_code == 401
    assert http.put("/api/flags", json=bad, headers={"authorization": "Bearer nope"}).status_code == 403
    r = http.put("/api/flags", json=bad, headers=AUTH)
    assert r.status_code == 400 and "ghost" in r.json()["error"]["message"]
    r = http.put("/api/flags", json={"flags": {}}, headers=AUTH)
    assert r.status_code == 200 and r.json()["flags"] == {} and r.json()["last_error"] is None
    wait_until(lambda: answered_by(http) == "smollm2", WITHIN_S, "smollm2 back in routing")


def test_a_10_percent_canary_lands_near_10_percent_and_sessions_stay_on_their_variant(http, request_log_dir):
    canary = {"state": "ENABLED", "variants": {"baseline": "", "candidate": "smollm2-upstream"},
              "defaultVariant": "baseline", "targeting": {"fractional": [["baseline", 90], ["candidate", 10]]}}
    r = http.put("/api/flags", json={"flags": {"canary.text": canary}}, headers=AUTH)
    assert r.status_code == 200, r.text
    variants, models = Counter(), Counter()
    for i in range(500):
        r = chat(http, model="auto", **{"x-session-id": f"user-{i}"})
        assert r.status_code == 200, r.text
        variants[r.headers["x-switchboard-variant"]] += 1
        models[(r.headers["x-switchboard-variant"], r.headers["x-switchboard-model"])] += 1
    share = variants["canary.text=candidate"] / 500
    assert 0.07 <= share <= 0.13, variants
    assert models[("canary.text=candidate", "smollm2-upstream")] == variants["canary.text=candidate"], models
    assert models[("canary.text=baseline", "smollm2")] == variants["canary.text=baseline"], models
    for session in ("user-3", "user-42", "user-77"):
        seen = {chat(http, model="auto", **{"x-session-id": session}).headers["x-switchboard-variant"]
                for _ in range(5)}
        assert len(seen) == 1, (session, seen)
    request_id = f"canary-{uuid.uuid4().hex[:8]}"
    r = chat(http, model="auto", **{"x-session-id": "user-3", "x-request-id": request_id})
    line = the_line(request_log_dir, request_id)
    assert line["variant"]["flag"] == "canary.text"
    assert f"canary.text={line['variant']['variant']}" == r.headers["x-switchboard-variant"]


def shadow_entries(log_dir, ids) -> dict[str, dict]:
    return {e["request_id"]: e for e in read_shadow(log_dir) if e["request_id"] in ids}


def test_a_shadow_that_errors_or_hangs_never_changes_the_users_answer(http, request_log_dir):
    def ask(request_id=None, **extra):
        headers = {"x-request-id": request_id} if request_id else {}
        return http.post("/v1/chat/completions", headers=headers, json={
            "model": "smollm2", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Name one colour."}], **extra})

    expected = ask().json()["choices"][0]["message"]["content"]
    breaker = http.get("/api/admin/breakers", headers=AUTH).json()["smollm2-upstream"]
    shadow = {"state": "ENABLED", "variants": {"on": "smollm2-upstream"}, "defaultVariant": "on"}  # every request
    assert http.put("/api/flags", json={"flags": {"shadow.text": shadow}}, headers=AUTH).status_code == 200
    try:
        for fault, ended in (({"error_rate": 1.0}, "error"), ({"hang": True}, "timeout")):
            assert http.put("/api/admin/faults/smollm2-upstream", json=fault, headers=AUTH).status_code == 200
            ids, answered_at = [f"shadowed-{uuid.uuid4().hex[:8]}" for _ in range(3)], []
            for request_id in ids:
                r = ask(request_id)
                answered_at.append(time.time())
                assert r.status_code == 200 and r.headers["x-switchboard-model"] == "smollm2"
                assert r.headers["x-switchboard-degraded"] == "false"
                assert r.json()["choices"][0]["message"]["content"] == expected
            entries = wait_until(lambda: len(shadow_entries(request_log_dir, ids)) == 3 and
                                 shadow_entries(request_log_dir, ids), 60, f"the {ended} shadows")
            assert {e["shadow"]["status"] for e in entries.values()} == {ended}, entries
            assert {e["shadow"]["model"] for e in entries.values()} == {"smollm2-upstream"}
            if ended == "timeout":  # every answer was out before the first hung shadow gave up
                first_given_up = min(datetime.fromisoformat(e["ts"]).timestamp() for e in entries.values())
                assert max(answered_at) < first_given_up
        after = http.get("/api/admin/breakers", headers=AUTH).json()["smollm2-upstream"]
        assert after["breaker"] == breaker["breaker"] == "closed"  # six failed shadows: never counted
        assert after["failures_in_window"] <= breaker["failures_in_window"]
        assert http.delete("/api/admin/faults/smollm2-upstream", headers=AUTH).status_code == 200
        request_id = f"shadowed-{uuid.uuid4().hex[:8]}"
        streamed = ask(request_id, stream=True)
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
        entry = wait_until(lambda: shadow_entries(request_log_dir, {request_id}).get(request_id), 60, "the shadow")
        assert entry["shadow"]["status"] == "ok" and 0 <= entry["similarity"] <= 1
        assert entry["primary"]["model"] == "smollm2" and entry["primary"]["output_chars"] > 0
    finally:
        http.delete("/api/admin/faults/smollm2-upstream", headers=AUTH)
