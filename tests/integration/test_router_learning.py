"""The learning loop end to end on the real service: requests the router sends the wrong way, people
correct them with /api/feedback, `switchboard train-router` trains on the log, and the running
service (no redeploy) routes the same requests and paraphrases it never saw the right way, while
held-out accuracy does not drop; `switchboard rollback-router` goes back."""

import json
import subprocess
import sys
import uuid

import httpx
import pytest
import yaml

from intent_router.learning_data import held_out
from tests.integration.conftest import ROOT, roster_config, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Writing tasks that mention audio media: the shipped head sends them to voice (text to speech);
# this deployment's users want the words written (text).
CORRECTED = [
    "Draft the voiceover script for our product video",
    "Write the audiobook back-cover text for a romance novel",
    "Draft voice-over lines for an explainer video about solar panels",
    "Prepare the voiceover text for a museum tour video",
    "Draft voiceover copy for a charity appeal video",
    "Write a blurb for the audiobook edition of my memoir",
    "Write the voiceover narration copy for a real estate listing video",
    "Draft the audiobook jacket description for a historical saga",
]
PARAPHRASES = [  # never sent before training
    "Write the voice-over copy for our app's launch trailer",
    "Draft a voiceover for a travel vlog about Portugal",
    "Write an audiobook blurb for a thriller",
    "Create an audiobook teaser description for a sci-fi series",
]


def trained_id(prefix: str) -> str:
    """A request id whose correction is trained on (one in five ids is kept for evaluation only)."""
    while held_out(rid := f"{prefix}-{uuid.uuid4().hex[:12]}"):
        pass
    return rid


def classify(http: httpx.Client, text: str, rid: str | None = None) -> dict:
    r = http.post("/api/classify", headers={"x-request-id": rid} if rid else {},
                  json={"messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.json()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serve_app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def test_corrections_teach_the_router_without_a_redeploy(switchboard, llama_server, router_dir, request_log_dir,
                                                         tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"applications": [{
        "name": "switchboard", "import_path": "serve_app.builder:build_app", "route_prefix": "/",
        "args": roster_config(llama_server, str(router_dir), str(request_log_dir))}]}))
    with httpx.Client(base_url=switchboard, timeout=120) as http:
        before = {text: classify(http, text) for text in CORRECTED + PARAPHRASES}
        wrong = [t for t, d in before.items() if d["intent"] != "text"]
        assert len(wrong) >= len(before) - 2, before  # the shipped head gets (nearly) all of them wrong
        version = before[CORRECTED[0]]["meta"]["head_version"]
        for text in CORRECTED:
            rid = trained_id("learn")
            assert classify(http, text, rid)["intent"] == "voice"
            r = http.post("/api/feedback", json={"request_id": rid, "rating": "down",
                                                 "correction": {"intent": "text"}})
            assert r.status_code == 200, r.text

        trained = cli("train-router", "--config", str(config), "--data", str(ROOT / "data" / "router"),
                      "--artifacts", str(router_dir), "--log-dir", str(request_log_dir))
        assert trained.returncode == 0, trained.stderr
        report = json.loads(trained.stdout)
        assert report["published"] is True
        intent = report["intent"]
        assert intent["corrections_train"] >= len(CORRECTED)
        assert intent["new_accuracy"] >= intent["current_accuracy"], intent

        # the running service picks the new head up (reload_check_s 0.5), no redeploy
        wait_until(lambda: classify(http, CORRECTED[0])["meta"]["head_version"] > version, 60, "the new head")
        after = {text: classify(http, text)["intent"] for text in CORRECTED + PARAPHRASES}
        assert all(after[t] == "text" for t in CORRECTED), after
        assert sum(after[t] == "text" for t in PARAPHRASES) >= len(PARAPHRASES) - 1, after

        rolled = cli("rollback-router", "--config", str(config), "--artifacts", str(router_dir))
        assert rolled.returncode == 0, rolled.stderr
        wait_until(lambda: classify(http, CORRECTED[0])["meta"]["head_version"] == version, 60, "the old head")
        assert classify(http, CORRECTED[0])["intent"] == before[CORRECTED[0]]["intent"]
