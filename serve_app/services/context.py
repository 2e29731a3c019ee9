"""Per-request state the services share: the id, the deadline, and which models answered."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from graphs.deadline import Deadline
from graphs.failover import Failure
from graphs.faults import RequestFacts
from serve_app.services.media_budget import MediaTally
from vocabulary.public_text import scrub


@dataclass
class RequestContext:
    request_id: str
    deadline: Deadline
    models: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # told to the LLM, so that its answer says so
    reasons: list[str] = field(default_factory=list)  # other reasons the answer is degraded (router fallback)
    intent: str | None = None
    agreement: float | None = None  # two OCR engines on the same image: 1 - CER
    facts: RequestFacts = field(default_factory=RequestFacts)  # what conditional faults (and the log) see
    # For the request log: every call made (model, attempt, latency, status, ...), the route, and
    # what was learnt about the input.
    calls: list[dict] = field(default_factory=list)
    route: dict | None = None
    error_code: str | None = None  # an error after the answer began (a stream that broke)
    stt_confidence: float | None = None
    untrusted: bool = False  # a transcript under stt.min_confidence
    attachments: dict | None = None
    embedding: Any = None  # the classified text's sentence embedding (numpy), for the choice heads
    choices: list[dict] = field(default_factory=list)  # chains the choice heads ordered (for the log)
    committee: dict | None = None  # the committee's members and how each ended, when one answered
    media: MediaTally = field(default_factory=MediaTally)  # decoded pixels and audio seconds so far
    targeting_key: str | None = None  # what flags split traffic on: x-session-id, the client key, the request id
    variant: dict | None = None  # the canary variant this request got, when a canary flag is set

    @property
    def degraded(self) -> bool:
        return bool(self.failures or self.notes or self.reasons)

    def learn(self, **known) -> None:
        """Add to the request's facts (intent, text, input_chars, ...): see graphs.faults.RequestFacts."""
        self.facts = replace(self.facts, **known)

    def child(self, deadline: Deadline) -> "RequestContext":
        """A context for one part of the request (a committee member) with its own deadline and its
        own answers and failures; its calls still go to the request's log line."""
        sub = RequestContext(self.request_id, deadline)
        sub.calls, sub.facts, sub.embedding, sub.choices = self.calls, self.facts, self.embedding, self.choices
        sub.media, sub.targeting_key, sub.variant = self.media, self.targeting_key, self.variant
        return sub

    def doubted(self, models: list[str]) -> frozenset[str]:
        """The models of `models` the choice heads doubted for this request (see ChoiceSpec.doubt_below),
        from the ordering made for the chain they belong to."""
        asked = set(models)
        return frozenset(m for made in self.choices if asked <= set(made["order"]) for m in made.get("doubted", ())
                         if m in asked)

    def used(self, model: str, failures: list[Failure] = ()) -> None:
        if model not in self.models:
            self.models.append(model)
        self.failures.extend(failures)

    def headers(self) -> dict[str, str]:
        out = {"x-switchboard-models": ",".join(self.models),
               "x-switchboard-model": self.models[-1] if self.models else "",
               "x-switchboard-degraded": "true" if self.degraded else "false"}
        if self.intent:
            out["x-switchboard-intent"] = self.intent
        if self.untrusted:
            out["x-switchboard-untrusted"] = "true"
        if self.failures:
            out["x-switchboard-failed"] = ",".join(dict.fromkeys(f.model for f in self.failures))
        if self.variant:
            out["x-switchboard-variant"] = f"{self.variant['flag']}={self.variant['variant']}"
        return out

    def summary(self) -> dict:
        """The `switchboard` field of /api bodies and chat responses."""
        return {"models": self.models, "degraded": self.degraded,
                "failed": [scrub(f.describe()) for f in self.failures], "notes": self.notes + self.reasons}
