"""The shadow runner's bounds: handing a job over never waits, a full queue drops (and counts), a
shadow that errors or hangs is recorded and never raised, and answers are compared by similarity.
The model client is a stand-in for a Ray handle here (the real app is in
tests/integration/test_flags_and_canary.py)."""

import asyncio

from graphs.faults import Fault
from serve_app.services.roster import Roster
from serve_app.shadowing import ShadowJob, ShadowRunner
from vocabulary.calls import ChatCall
from vocabulary.config import ShadowSpec, SwitchboardConfig

UP = {"kind": "upstream", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
CONFIG = SwitchboardConfig(models=[{"name": n, "family": "llm", "backend": UP} for n in ("a", "b")])


class StandInClient:
    """Answers like an LLM deployment's handle: after `delay_s`, with `text` (or raises `error`)."""

    def __init__(self, text="the cat sat", delay_s=0.0, error=None):
        self.text, self.delay_s, self.error, self.calls = text, delay_s, error, 0

    async def call(self, method, payload, deadline=None):
        assert method == "chat" and isinstance(payload, ChatCall) and payload.budget_s > 0
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.error:
            raise self.error
        return {"choices": [{"message": {"role": "assistant", "content": self.text}}]}


def job(n=0, text="the cat sat"):
    return ShadowJob(f"r{n}", "text", "b", lambda d: ChatCall(request_id=f"r{n}", messages=[], budget_s=d.remaining()),
                     "a", text, 12.5)


def runner(client, **spec):
    roster = Roster(CONFIG, {"b": client})
    written = []
    return ShadowRunner(roster, ShadowSpec(**spec), written.append), written, roster


def test_a_shadow_answer_is_compared_and_written_without_text():
    async def go():
        shadow, written, _ = runner(StandInClient("the cat sat down"))
        shadow.offer(job(text="the cat sat"))
        await shadow._queue.join()
        return written

    (entry,) = asyncio.run(go())
    assert entry["shadow"]["status"] == "ok" and entry["shadow"]["output_chars"] == 16
    assert entry["primary"] == {"model": "a", "latency_ms": 12.5, "output_chars": 11}
    assert 0.6 < entry["similarity"] < 1 and "cat" not in str(entry)


def test_handing_over_never_waits_and_a_full_queue_drops():
    async def go():
        client = StandInClient(delay_s=0.2)
        shadow, written, _ = runner(client, max_queue=2, concurrency=1)
        shadow.offer(job(0))
        while client.calls == 0:  # the worker took the first job: it runs for 0.2 s
            await asyncio.sleep(0.001)
        for n in range(1, 6):
            shadow.offer(job(n))
        # Five offers handed over while the first job still runs: none waited for it.
        handed = (client.calls, [e["shadow"]["status"] for e in written])
        await shadow._queue.join()
        return shadow, written, handed, client

    shadow, written, handed, client = asyncio.run(go())
    assert handed == (1, ["dropped"] * 3)
    assert shadow.counts["dropped"] == 3 and client.calls == 3  # one running, two queued, three dropped
    assert sorted(e["shadow"]["status"] for e in written) == ["dropped"] * 3 + ["ok"] * 3


def test_a_shadow_that_errors_or_hangs_is_recorded_never_raised():
    async def go():
        from vocabulary.errors import ModelError

        failing, written_e, _ = runner(StandInClient(error=ModelError("model b failed (boom)")))
        failing.offer(job(1))
        await failing._queue.join()
        hanging, written_h, roster = runner(StandInClient(), timeout_s=0.1)
        roster.faults.set("b", Fault(hang=True))  # the model's injected faults apply to its shadow calls
        hanging.offer(job(2))
        await hanging._queue.join()
        return written_e, written_h, hanging

    written_e, written_h, hanging = asyncio.run(go())
    assert written_e[0]["shadow"]["status"] == "error" and "boom" in written_e[0]["shadow"]["error"]
    assert written_e[0]["similarity"] is None
    assert written_h[0]["shadow"]["status"] == "timeout" and hanging.counts["timeout"] == 1


def test_no_shadow_when_the_shadow_model_answered_the_request():
    async def go():
        client = StandInClient()
        shadow, written, _ = runner(client)
        same = job()
        same.primary_model = "b"  # a failover reached the shadow model: nothing to compare
        shadow.offer(same)
        return client.calls, written, shadow.counts["offered"]

    assert asyncio.run(go()) == (0, [], 0)
