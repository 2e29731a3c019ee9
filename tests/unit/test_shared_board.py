"""The shared board (serve_app/shared_state): two ingress replicas' breakers, faults and flags agree
through it. Plain objects stand in for the Ray actor handle: the board's methods are called as they
would be through `.remote()`."""

import asyncio
from types import SimpleNamespace

import pytest

from graphs.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from graphs.faults import Fault, FaultBook
from serve_app.shared_state.board import SharedBoard
from serve_app.shared_state.follower import BoardFollower

MODELS = ("smollm2", "smollm2-hf")
POLICY = BreakerPolicy(failure_threshold=4, window_s=60, cooldown_s=30)


class LocalHandle:
    """What `ray.get_actor(...)` gives, for an object in this process: `handle.method.remote(*args)`."""

    def __init__(self, board: SharedBoard, *, down: bool = False) -> None:
        self.board = board
        self.down = down

    def __getattr__(self, name: str):
        method = getattr(self.board, name)

        async def call(*args):
            if self.down:
                raise ConnectionError("board unreachable")
            return await method(*args)
        return SimpleNamespace(remote=call)


class Replica:
    def __init__(self, name: str, handle: LocalHandle, fingerprint: str = "config-1") -> None:
        self.adopted: list[dict] = []

        async def adopt(body):
            self.adopted.append(body)

        breaker = SimpleNamespace(failure_threshold=POLICY.failure_threshold, window_s=POLICY.window_s)
        self.roster = SimpleNamespace(config=SimpleNamespace(resilience=SimpleNamespace(breaker=breaker)),
                                      faults=FaultBook(), breakers={})
        self.follower = BoardFollower(self.roster, name, fingerprint, lambda: handle, adopt_flags=adopt)
        self.roster.breakers = {m: CircuitBreaker(m, POLICY, on_change=self.follower.breaker_changed,
                                                  on_failure=self.follower.failure_counted) for m in MODELS}

    def fail(self, model: str, times: int = 1) -> None:
        for _ in range(times):
            breaker = self.roster.breakers[model]
            breaker.record_failure(breaker.acquire())


async def settled(*replicas: Replica, timeout_s: float = 5.0) -> None:
    """Until every outbox is drained and every follower has applied the board's last version."""
    async def done():
        board = replicas[0].follower._board.board
        while True:
            await asyncio.gather(*(r.follower.drained() for r in replicas))
            if all(r.follower._version == board._version for r in replicas):
                return
            await asyncio.sleep(0.01)
    await asyncio.wait_for(done(), timeout_s)


@pytest.fixture
async def pair():
    handle = LocalHandle(SharedBoard())
    a, b = Replica("ingress-a", handle), Replica("ingress-b", handle)
    await a.follower.start()
    await b.follower.start()
    yield a, b
    await a.follower.stop()
    await b.follower.stop()


async def test_failures_split_across_replicas_open_the_breaker_on_both(pair):
    a, b = pair
    a.fail("smollm2", 2)
    b.fail("smollm2", 2)  # 2 + 2 reach the threshold of 4 only together
    await settled(a, b)
    assert a.roster.breakers["smollm2"].state is BreakerState.OPEN
    assert b.roster.breakers["smollm2"].state is BreakerState.OPEN
    assert a.roster.breakers["smollm2-hf"].state is BreakerState.CLOSED


async def test_without_the_board_the_same_failures_open_nothing():
    """The control: the same split of failures with no board leaves both breakers closed."""
    breakers = [CircuitBreaker("smollm2", POLICY) for _ in range(2)]
    for breaker in breakers:
        for _ in range(2):
            breaker.record_failure(breaker.acquire())
    assert [b.state for b in breakers] == [BreakerState.CLOSED, BreakerState.CLOSED]


async def test_an_opening_keeps_its_time_and_a_close_reaches_the_other(pair):
    a, b = pair
    a.fail("smollm2", 4)
    await settled(a, b)
    assert b.roster.breakers["smollm2"].state is BreakerState.OPEN
    assert b.roster.breakers["smollm2"].opened_ago_s < 5  # the cooldown runs from a's opening, not later
    a.roster.breakers["smollm2"].reset()  # an operator, or a's probe succeeding
    await settled(a, b)
    assert b.roster.breakers["smollm2"].state is BreakerState.CLOSED
    version = a.follower._version
    await asyncio.sleep(0.1)
    assert a.follower._version == version  # applying does not echo back: no churn


async def test_faults_and_flags_reach_the_other_replica(pair):
    a, b = pair
    a.roster.faults.set("smollm2", Fault(error_rate=1.0))
    assert await a.follower.set_fault("smollm2", {"error_rate": 1.0})
    await settled(a, b)
    assert b.roster.faults.get("smollm2").error_rate == 1.0
    assert await b.follower.set_fault("smollm2", None)
    await settled(a, b)
    assert a.roster.faults.get("smollm2") is None
    body = {"flags": {"committee.enabled": {"variants": {"on": True}, "defaultVariant": "on"}}}
    assert await a.follower.set_flags(body)
    await settled(a, b)
    assert b.adopted == [body]


async def test_a_replica_that_joins_later_gets_what_is_in_force(pair):
    a, b = pair
    a.fail("smollm2-hf", 4)
    await a.follower.set_fault("smollm2", {"latency_ms": 100})
    await settled(a, b)
    c = Replica("ingress-c", a.follower._board)
    await c.follower.start()
    try:
        assert c.roster.breakers["smollm2-hf"].state is BreakerState.OPEN
        assert c.roster.faults.get("smollm2").latency_ms == 100
    finally:
        await c.follower.stop()


async def test_a_new_configuration_starts_the_board_afresh(pair):
    a, b = pair
    a.fail("smollm2", 4)
    await settled(a, b)
    fresh = Replica("ingress-new", a.follower._board, fingerprint="config-2")
    await fresh.follower.start()
    try:
        assert fresh.roster.breakers["smollm2"].state is BreakerState.CLOSED
    finally:
        await fresh.follower.stop()


async def test_an_unreachable_board_leaves_the_replica_working_then_it_rejoins(monkeypatch):
    monkeypatch.setattr("serve_app.shared_state.follower.RETRY_S", 0.05)
    handle = LocalHandle(SharedBoard(), down=True)
    lone = Replica("ingress-a", handle)
    await lone.follower.start()  # does not raise: works alone
    try:
        assert not lone.follower.view()["connected"]
        lone.fail("smollm2", 4)
        assert lone.roster.breakers["smollm2"].state is BreakerState.OPEN  # its own breaker still works
        handle.down = False
        other = Replica("ingress-b", handle)
        await other.follower.start()

        async def shared():
            while other.roster.breakers["smollm2"].state is not BreakerState.OPEN:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(shared(), 5)  # back: it told the board what it holds
        await other.follower.stop()
    finally:
        await lone.follower.stop()
