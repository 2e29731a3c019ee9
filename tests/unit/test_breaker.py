import pytest

from graphs.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def breaker(**policy):
    clock = Clock()
    changes = []
    b = CircuitBreaker("m", BreakerPolicy(**policy), clock=clock,
                       on_change=lambda model, old, new: changes.append((old.value, new.value)))
    return b, clock, changes


def fail(b, n=1):
    for _ in range(n):
        b.acquire()
        b.record_failure()


def test_opens_at_the_third_failure_within_the_window():
    b, clock, changes = breaker()
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN and changes == [("closed", "open")]
    with pytest.raises(CircuitOpen):
        b.acquire()


def test_failures_outside_the_window_do_not_count():
    b, clock, _ = breaker(window_s=60)
    fail(b, 2)
    clock.now += 61
    fail(b)
    assert b.state is BreakerState.CLOSED


def test_exactly_one_probe_when_half_open():
    b, clock, changes = breaker(cooldown_s=30)
    fail(b, 3)
    clock.now += 29
    with pytest.raises(CircuitOpen):
        b.acquire()
    clock.now += 1
    assert b.state is BreakerState.HALF_OPEN
    b.acquire()  # the probe
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            b.acquire()  # everyone else is still skipped
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    b.acquire()
    b.record_success()


def test_a_failed_probe_reopens_for_a_full_cooldown():
    b, clock, changes = breaker(cooldown_s=30)
    fail(b, 3)
    clock.now += 30
    b.acquire()
    b.record_failure()
    assert b.state is BreakerState.OPEN and changes[-1] == ("half_open", "open")
    clock.now += 29
    with pytest.raises(CircuitOpen):
        b.acquire()


def test_release_lets_the_next_caller_probe():
    b, clock, _ = breaker(cooldown_s=1)
    fail(b, 3)
    clock.now += 1
    b.acquire()
    b.release()  # e.g. the client's own bad input: says nothing about the model
    b.acquire()
    b.record_success()
    assert b.state is BreakerState.CLOSED


def test_success_while_closed_keeps_counting_nothing_back():
    b, _, changes = breaker()
    fail(b, 2)
    b.acquire()
    b.record_success()
    fail(b)
    assert b.state is BreakerState.OPEN  # three failures within the window, a success between
