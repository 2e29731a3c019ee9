import asyncio

from graphs.committee import Member, agreement, character_error_rate, convene, merge
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


async def test_all_waits_for_every_member_in_parallel():
    results = await convene([member("a", delay=0.05), member("b", delay=0.05), member("c", fail=True)],
                            Deadline(5), "all")
    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert results[0].model == "a-model" and results[2].error == "c broke"
    assert max(r.latency_ms for r in results[:2]) < 1000


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
