import asyncio

import pytest

from graphs.deadline import Deadline, DeadlineExpired


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_remaining_counts_down_and_floors_at_zero():
    clock = Clock()
    deadline = Deadline(2.0, clock=clock)
    clock.now += 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 1.0
    assert deadline.remaining() == 0 and deadline.expired()


async def test_run_cuts_a_hung_call_at_the_budget():
    never = asyncio.Event()
    with pytest.raises(DeadlineExpired):
        await Deadline(0.05).run(never.wait())


async def test_run_with_nothing_left_does_not_start_the_call():
    clock = Clock()
    deadline = Deadline(0.0, clock=clock)
    started = []

    async def call():
        started.append(1)

    coro = call()
    with pytest.raises(DeadlineExpired):
        await deadline.run(coro)
    assert started == []
