"""Nothing heavy runs on the ingress's event loop: while a chat about a dense page of text is in
flight (the image checked, read by both OCR engines, their readings compared, the LLM asked),
/api/health/live keeps answering. Before, the readings' comparison alone (a pure-Python
Levenshtein) held the loop for seconds, and every request waited behind it.

Conditions, not timings (timings are loadtests/bench_liveness.py's): probes keep being answered
during the chat, and none of them waits for anything like the chat itself."""

import base64
import threading
import time

import httpx
import pytest

from tests.integration.media import dense_page

pytestmark = pytest.mark.integration


def test_liveness_answers_while_a_dense_page_chat_runs(switchboard):
    page = base64.b64encode(dense_page()).decode()
    body = {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What does this letter say?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{page}"}}]}]}
    chat: dict = {}

    def run_chat():
        with httpx.Client(base_url=switchboard, timeout=120) as c:
            chat["started"] = time.monotonic()
            chat["response"] = c.post("/v1/chat/completions", json=body)
            chat["ended"] = time.monotonic()

    probes = []  # (sent, answered, status)
    with httpx.Client(base_url=switchboard, timeout=60) as c:
        c.get("/api/health/live")  # a warm connection
        worker = threading.Thread(target=run_chat)
        worker.start()
        while worker.is_alive():
            sent = time.monotonic()
            status = c.get("/api/health/live").status_code
            probes.append((sent, time.monotonic(), status))
            time.sleep(0.02)
        worker.join()

    r = chat["response"]
    assert r.status_code == 200, r.text
    attachments = r.json()["switchboard"]["attachments"]
    assert attachments[0]["type"] == "image" and len(attachments[0]["text"]) > 1000
    assert "agreement" in attachments[0]  # both engines read the page and were compared: the heavy path ran

    started, ended = chat["started"], chat["ended"]
    during = [(s, a, st) for s, a, st in probes if s >= started and a <= ended]
    assert all(st == 200 for _, _, st in probes)
    assert len(during) >= 10, "the ingress stopped answering while the chat ran"
    slowest = max(a - s for s, a, _ in during)
    assert slowest < (ended - started) / 4, (slowest, ended - started)
