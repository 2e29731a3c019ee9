"""The breaker against a reference model, under interleaved calls, outcomes in any order (late ones
included), clock steps around the cooldown and the window, and resets.

Invariants: the breaker's state, failure count and state changes are the reference's; it admits a
call exactly when the reference does; at most one probe is out per half-open period; an outcome of a
permit from an earlier generation changes nothing."""

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule

from graphs.breaker import BreakerPolicy, CircuitBreaker, CircuitOpen, Permit


@dataclass(frozen=True)
class Ticket:
    """The reference's record of one admitted call."""

    number: int  # tells two calls apart
    period: int  # the reference's count of state changes when the call was admitted
    probe: bool


@dataclass
class Reference:
    """The rules, written out plainly: independent of graphs/breaker.py."""

    threshold: int
    window: int
    cooldown: int
    mode: str = "closed"
    period: int = 0
    opened_at: int = 0
    failure_times: list[int] = field(default_factory=list)
    probe: Ticket | None = None
    transitions: list[tuple[str, str]] = field(default_factory=list)
    issued: int = 0

    def view(self, now: int) -> str:
        if self.mode == "open" and now - self.opened_at >= self.cooldown:
            return "half_open"
        return self.mode

    def failures(self, now: int) -> int:
        return len([t for t in self.failure_times if now - t <= self.window])

    def enter(self, mode: str) -> None:
        if mode != self.mode:
            self.transitions.append((self.mode, mode))
        self.mode, self.period, self.failure_times, self.probe = mode, self.period + 1, [], None

    def acquire(self, now: int) -> Ticket | None:
        if self.mode == "open" and now - self.opened_at >= self.cooldown:
            self.enter("half_open")
        if self.mode == "open" or (self.mode == "half_open" and self.probe is not None):
            return None
        self.issued += 1
        ticket = Ticket(self.issued, self.period, probe=self.mode == "half_open")
        if ticket.probe:
            self.probe = ticket
        return ticket

    def record_success(self, ticket: Ticket, now: int) -> None:
        if ticket == self.probe:
            self.enter("closed")

    def record_failure(self, ticket: Ticket, now: int) -> None:
        if ticket == self.probe:
            self.enter("open")
            self.opened_at = now
        elif self.mode == "closed" and ticket.period == self.period:
            self.failure_times.append(now)
            if self.failures(now) >= self.threshold:
                self.enter("open")
                self.opened_at = now

    def release(self, ticket: Ticket, now: int) -> None:
        if ticket == self.probe:
            self.probe = None

    def reset(self) -> None:
        self.enter("closed")


class Clock:
    def __init__(self) -> None:
        self.now = 1000

    def __call__(self) -> int:
        return self.now


@dataclass(frozen=True)
class Held:
    permit: Permit
    ticket: Ticket


class BreakerMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    @initialize(threshold=st.integers(1, 4), window=st.integers(1, 20), cooldown=st.integers(1, 20))
    def start(self, threshold, window, cooldown):
        self.clock = Clock()
        self.changes = []
        self.breaker = CircuitBreaker("m", BreakerPolicy(threshold, window, cooldown), clock=self.clock,
                                      on_change=lambda model, old, new: self.changes.append((old.value, new.value)))
        self.ref = Reference(threshold, window, cooldown)
        self.outstanding: list[Held] = []
        self.generations: dict[int, int] = {}  # reference period -> the breaker's generation

    def call(self) -> Held | None:
        """One call asks both the breaker and the rules; they must agree on whether it may go."""
        ticket = self.ref.acquire(self.clock.now)
        try:
            permit = self.breaker.acquire()
        except CircuitOpen:
            assert ticket is None, "refused a call the rules admit"
            return None
        assert ticket is not None, "admitted a call the rules refuse"
        assert permit.probe == ticket.probe
        assert self.generations.setdefault(ticket.period, permit.generation) == permit.generation
        assert len(set(self.generations.values())) == len(self.generations), "a generation was reused"
        held = Held(permit, ticket)
        self.outstanding.append(held)
        return held

    def end(self, held: Held, outcome: str) -> None:
        self.outstanding.remove(held)
        stale = held.ticket.period != self.ref.period
        before = (self.breaker.state, list(self.changes), self.breaker.failures_in_window())
        getattr(self.breaker, outcome)(held.permit)
        getattr(self.ref, outcome)(held.ticket, self.clock.now)
        if stale:
            after = (self.breaker.state, self.changes, self.breaker.failures_in_window())
            assert after == before, f"{outcome} of a permit from an earlier generation changed the breaker"

    @rule(target=permits, calls=st.integers(1, 3))
    def start_calls(self, calls):
        """Calls arriving together; those admitted hold their permits until `finish_call`."""
        return multiple(*filter(None, (self.call() for _ in range(calls))))

    @rule(held=consumes(permits), outcome=st.sampled_from(["record_success", "record_failure", "release"]))
    def finish_call(self, held, outcome):
        """Any outstanding call, in any order: late ones too."""
        self.end(held, outcome)

    @rule(calls=st.integers(1, 4))
    def fail_at_once(self, calls):
        """Calls that fail as soon as they start (a model that is down)."""
        for _ in range(calls):
            if held := self.call():
                self.end(held, "record_failure")

    @rule(data=st.data())
    def advance(self, data):
        """Time passes: less than, around and beyond the cooldown and the window."""
        p = self.ref
        near = [0, 1, p.cooldown - 1, p.cooldown, p.cooldown + 1, p.window - 1, p.window, p.window + 1]
        self.clock.now += data.draw(st.sampled_from(near) | st.integers(0, 3 * max(p.window, p.cooldown)))

    @rule()
    def reset(self):
        """By hand, in any state, calls in flight or not."""
        self.breaker.reset()
        self.ref.reset()

    @invariant()
    def same_state_as_the_rules(self):
        assert self.breaker.state.value == self.ref.view(self.clock.now)
        assert self.breaker.failures_in_window() == self.ref.failures(self.clock.now)
        assert self.changes == self.ref.transitions

    @invariant()
    def admits_a_call_exactly_when_the_rules_do(self):
        if held := self.call():
            self.end(held, "release")  # a call that says nothing about the model leaves no trace

    @invariant()
    def at_most_one_probe_out_per_half_open_period(self):
        periods = [h.ticket.period for h in self.outstanding if h.permit.probe]
        assert len(periods) == len(set(periods))


BreakerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=200, deadline=None)
TestBreakerMachine = BreakerMachine.TestCase
