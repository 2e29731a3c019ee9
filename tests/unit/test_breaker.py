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
        b.record_failure(b.acquire())


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
    assert b.failures_in_window() == 1


def test_exactly_one_probe_when_half_open():
    b, clock, changes = breaker(cooldown_s=30)
    fail(b, 3)
    clock.now += 29
    with pytest.raises(CircuitOpen):
        b.acquire()
    clock.now += 1
    assert b.state is BreakerState.HALF_OPEN
    probe = b.acquire()
    assert probe.probe
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            b.acquire()  # everyone else is still skipped
    b.record_success(probe)
    assert b.state is BreakerState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    permit = b.acquire()
    assert not permit.probe
    b.record_success(permit)


def test_a_failed_probe_reopens_for_a_full_cooldown():
    b, clock, changes = breaker(cooldown_s=30)
    fail(b, 3)
    clock.now += 30
    b.record_failure(b.acquire())
    assert b.state is BreakerState.OPEN and changes[-1] == ("half_open", "open")
    clock.now += 29
    with pytest.raises(CircuitOpen):
        b.acquire()


def test_release_lets_the_next_caller_probe():
    b, clock, _ = breaker(cooldown_s=1)
    fail(b, 3)
    clock.now += 1
    b.release(b.acquire())  # e.g. the client's own bad input: says nothing about the model
    b.record_success(b.acquire())
    assert b.state is BreakerState.CLOSED


def test_success_while_closed_keeps_counting_nothing_back():
    b, _, changes = breaker()
    fail(b, 2)
    b.record_success(b.acquire())
    fail(b)
    assert b.state is BreakerState.OPEN  # three failures within the window, a success between


def test_reset_closes_by_hand_and_forgets_calls_in_flight():
    b, _, changes = breaker()
    in_flight = b.acquire()
    fail(b, 3)
    b.reset()
    assert b.state is BreakerState.CLOSED and changes[-1] == ("open", "closed")
    b.record_failure(in_flight)
    assert b.failures_in_window() == 0


def test_a_permits_failure_counts_once():
    b, _, _ = breaker()
    permit = b.acquire()
    for _ in range(3):
        b.record_failure(permit)
    assert b.state is BreakerState.CLOSED and b.failures_in_window() == 1


# Regressions: outcomes used to carry no permit (issue 9, "A breaker with permits").

def test_a_late_release_from_before_the_breaker_opened_does_not_let_a_second_probe_through():
    b, clock, _ = breaker(cooldown_s=30)
    slow = b.acquire()  # admitted while closed, still running
    fail(b, 3)
    clock.now += 30
    b.acquire()  # the probe
    b.release(slow)
    with pytest.raises(CircuitOpen):
        b.acquire()


def test_a_late_success_from_before_the_breaker_opened_does_not_close_it():
    b, clock, changes = breaker(cooldown_s=30)
    slow = b.acquire()
    fail(b, 3)
    b.record_success(slow)
    assert b.state is BreakerState.OPEN
    clock.now += 30
    probe = b.acquire()
    b.record_success(slow)  # not even while half-open
    assert b.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        b.acquire()
    b.record_success(probe)
    assert b.state is BreakerState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_late_failure_does_not_reopen_or_count_against_a_recovered_model():
    b, clock, _ = breaker(cooldown_s=30)
    streams = [b.acquire() for _ in range(3)]  # e.g. streams that die mid-answer, after the breaker opened
    fail(b, 3)
    clock.now += 30
    probe = b.acquire()
    b.record_failure(streams[0])  # a failure from before cannot fail the probe
    assert b.state is BreakerState.HALF_OPEN
    b.record_success(probe)
    for stream in streams[1:]:
        b.record_failure(stream)
    assert b.state is BreakerState.CLOSED and b.failures_in_window() == 0


def test_only_the_current_probe_frees_the_probe_slot():
    b, clock, _ = breaker(cooldown_s=1)
    fail(b, 3)
    clock.now += 1
    first = b.acquire()
    b.release(first)
    second = b.acquire()
    b.release(first)  # released twice: must not free the second probe's slot
    with pytest.raises(CircuitOpen):
        b.acquire()
    b.record_failure(second)
    assert b.state is BreakerState.OPEN
