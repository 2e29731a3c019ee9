import asyncio

from graphs.health import HealthMonitor


def probes(**behaviour):
    calls = {name: 0 for name in behaviour}

    def make(name, route, outcome):
        async def probe():
            calls[name] += 1
            if outcome == "fail":
                raise RuntimeError(f"{name} is broken")
            if outcome == "hang":
                await asyncio.Event().wait()
            return 1.5
        return route, probe

    return {name: make(name, *spec) for name, spec in behaviour.items()}, calls


async def test_all_ok():
    table, _ = probes(a=("llm", "ok"), b=("stt", "ok"))
    report = await HealthMonitor(table, timeout_s=1, cache_s=0).report()
    assert report["status"] == "ok"
    assert report["models"]["a"] == {"route": "llm", "status": "ok", "latency_ms": 1.5, "error": None}


async def test_degraded_when_a_route_keeps_a_living_model():
    table, _ = probes(a=("llm", "fail"), b=("llm", "ok"))
    report = await HealthMonitor(table, timeout_s=1, cache_s=0).report()
    assert report["status"] == "degraded"
    assert "a is broken" in report["models"]["a"]["error"]


async def test_down_when_a_route_has_none_and_hangs_are_cut():
    table, _ = probes(a=("llm", "ok"), b=("stt", "hang"))
    report = await HealthMonitor(table, timeout_s=0.05, cache_s=0).report()
    assert report["status"] == "down"
    assert report["routes"] == {"llm": "ok", "stt": "down"}
    assert "no answer within" in report["models"]["b"]["error"]


async def test_polling_is_cached_and_shared():
    table, calls = probes(a=("llm", "ok"))
    monitor = HealthMonitor(table, timeout_s=1, cache_s=60)
    await asyncio.gather(*(monitor.report() for _ in range(10)))
    await monitor.report()
    assert calls["a"] == 1
