"""Fault injection, the seed's "intentionally break your pipeline": per model, added latency, a
hang, an error rate, corrupted output, or a stream that dies after some chunks. Set in config and
at run time (PUT /api/admin/faults/{model}); applied around the calls the ingress makes, so every
failure path (breakers, chains, deadlines, validators) can be exercised on purpose.

A fault may be conditional (`when`): it fires only for requests whose facts (intent, attachments,
text, size, the image's measured skew and contrast) match, so that a failure campaign can break one
model for one class of inputs and leave the rest alone."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Literal, TypeVar

from vocabulary.text_pattern import compile_pattern, found

T = TypeVar("T")
Corruption = Literal["empty", "garbled"]


class InjectedFault(Exception):
    def __init__(self, model: str, what: str = "error") -> None:
        super().__init__(f"injected fault ({what})")
        self.model = model
        self.message = str(self)


@dataclass(frozen=True)
class RequestFacts:
    """What is known of a request when a model is called: its intent, the kinds of attachment it
    carries, the user's text, the size of its text, and its media as measured on the way in (the
    first image's size, text skew and contrast; the first audio's length)."""

    intent: str | None = None
    attachments: frozenset[str] = frozenset()  # "image", "audio"
    text: str = ""  # the user's (last) message
    input_chars: int = 0  # the text of all messages
    image_width: int | None = None
    image_height: int | None = None
    image_rotation: float | None = None  # degrees from level of the text, counter-clockwise, (-90, 90]
    image_contrast: float | None = None  # 0..1
    audio_seconds: float | None = None

    def with_image(self, width: int, height: int, rotation: float | None, contrast: float | None) -> "RequestFacts":
        """An image seen: the first one's size and measures are kept; later ones add only the kind."""
        kinds = self.attachments | {"image"}
        if self.image_width is not None:
            return replace(self, attachments=kinds)
        return replace(self, attachments=kinds, image_width=width, image_height=height,
                       image_rotation=rotation, image_contrast=contrast)

    def with_audio(self, seconds: float) -> "RequestFacts":
        kinds = self.attachments | {"audio"}
        return replace(self, attachments=kinds, audio_seconds=seconds if self.audio_seconds is None else
                       self.audio_seconds)


@dataclass(frozen=True)
class RequestPredicate:
    """A fault's `when`: every condition given (not None) must hold for the request's facts."""

    intents: tuple[str, ...] | None = None
    attachment: Literal["image", "audio", "none"] | None = None
    text_regex: str | None = None
    min_input_chars: int | None = None
    max_input_chars: int | None = None
    min_rotation_deg: float | None = None  # of the absolute skew
    max_rotation_deg: float | None = None
    min_contrast: float | None = None
    max_contrast: float | None = None

    def __post_init__(self) -> None:
        if self.intents is not None:
            object.__setattr__(self, "intents", tuple(self.intents))
        if self.text_regex is not None:
            compile_pattern(self.text_regex)  # now (when the fault is set), not on a request; ValueError

    def matches(self, facts: RequestFacts | None) -> bool:
        if facts is None:
            return False
        if self.intents is not None and facts.intent not in self.intents:
            return False
        if self.attachment == "none" and facts.attachments:
            return False
        if self.attachment in ("image", "audio") and self.attachment not in facts.attachments:
            return False
        if not _within(facts.input_chars, self.min_input_chars, self.max_input_chars):
            return False
        skew = abs(facts.image_rotation) if facts.image_rotation is not None else None
        if not _within(skew, self.min_rotation_deg, self.max_rotation_deg):
            return False
        if not _within(facts.image_contrast, self.min_contrast, self.max_contrast):
            return False
        return self.text_regex is None or found(self.text_regex, facts.text)


def _within(value: float | None, low: float | None, high: float | None) -> bool:
    """A bound on a fact the request lacks (None) does not hold."""
    if low is None and high is None:
        return True
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


@dataclass(frozen=True)
class Fault:
    error_rate: float = 0.0
    latency_ms: int = 0
    hang: bool = False
    corrupt: Corruption | None = None
    stream_break_after: int | None = None
    when: RequestPredicate | None = None  # a dict (FaultSpec.when's dump) is taken too

    def __post_init__(self) -> None:
        if isinstance(self.when, dict):
            object.__setattr__(self, "when", RequestPredicate(**self.when))

    def applies(self, facts: RequestFacts | None) -> bool:
        return self.active and (self.when is None or self.when.matches(facts))

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.hang or self.corrupt or
                    self.stream_break_after is not None)


class FaultBook:
    """The faults in force, by model name. A call passes the request's facts; a conditional fault
    fires only when they match (and never without facts: health probes, say)."""

    def __init__(self, initial: dict[str, Fault] | None = None, *, rng: random.Random | None = None) -> None:
        self._faults = dict(initial or {})
        self._rng = rng or random.Random()
        # Faults from elsewhere (the flags: the same on every replica), for models with none set here.
        self.flagged: Callable[[str], Fault | None] | None = None

    def set(self, model: str, fault: Fault) -> None:
        self._faults[model] = fault

    def clear(self, model: str) -> None:
        self._faults.pop(model, None)

    def get(self, model: str, facts: RequestFacts | None = None) -> Fault | None:
        """The fault that fires for a call to `model` with these facts, if any."""
        fault = self._faults.get(model)
        if fault is None and self.flagged is not None:
            fault = self.flagged(model)
        return fault if fault is not None and fault.applies(facts) else None

    def all(self, models: Iterable[str] = ()) -> dict[str, Fault]:
        """The faults in force: those set here, and for `models` without one, the flagged ones."""
        found = {k: v for k, v in self._faults.items() if v.active}
        if self.flagged is not None:
            for model in models:
                if model not in found and (fault := self.flagged(model)) is not None and fault.active:
                    found[model] = fault
        return found

    async def before(self, model: str, facts: RequestFacts | None = None) -> None:
        """Latency, hang and errors, before the call is made."""
        fault = self.get(model, facts)
        if fault is None:
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hang:
            await asyncio.Event().wait()  # until the request's deadline cancels it
        if fault.error_rate and self._rng.random() < fault.error_rate:
            raise InjectedFault(model)

    async def around(self, model: str, call: Callable[[], Awaitable[T]], corrupt: Callable[[Any, str], Any],
                     facts: RequestFacts | None = None) -> T:
        await self.before(model, facts)
        result = await call()
        fault = self.get(model, facts)
        return corrupt(result, fault.corrupt) if fault is not None and fault.corrupt else result

    def stream(self, model: str, chunks: AsyncIterator[Any], facts: RequestFacts | None = None) -> AsyncIterator[Any]:
        fault = self.get(model, facts)
        if fault is None or fault.stream_break_after is None:
            return chunks
        return _breaking(model, chunks, fault.stream_break_after)


async def _breaking(model: str, chunks: AsyncIterator[Any], after: int) -> AsyncIterator[Any]:
    n = 0
    async for chunk in chunks:
        if n >= after:
            raise InjectedFault(model, f"stream broke after {after} chunks")
        n += 1
        yield chunk
