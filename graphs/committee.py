"""The committee (the seed's "stupid committee"): several members asked in parallel under the
request's deadline, their outputs merged with plain labelled delimiters (no LLM arbitration), then
one LLM turn writes the answer from the merged context.

Modes: `all` waits for every member or the deadline, whichever comes first; `first_valid` returns as
soon as one member's output passes its validator. Members still running then are cancelled (their
calls are cancelled all the way to the replicas) and reported as `timeout` or `skipped`.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from dataclasses import dataclass
from typing import Awaitable, Callable, Literal

from rapidfuzz.distance import Levenshtein

from graphs.deadline import Deadline
from vocabulary.public_text import scrub

Mode = Literal["all", "first_valid"]
Status = Literal["ok", "error", "timeout", "skipped"]


class MemberSkipped(Exception):
    """The member was not asked (e.g. its models' breakers are all open)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Member:
    name: str  # a label: the route or model asked
    run: Callable[[Deadline], Awaitable[tuple[str, str]]]  # -> (model that answered, text output)
    valid: Callable[[str], bool] = lambda text: bool(text.strip())


@dataclass(frozen=True)
class MemberResult:
    name: str
    status: Status
    latency_ms: float
    model: str | None = None
    output: str = ""
    error: str | None = None
    # first_valid: cancelled because an earlier member already answered. Not a failure: the
    # committee had what it asked for, so it does not make the answer degraded.
    superseded: bool = False

    @property
    def degrades(self) -> bool:
        """Whether this member's outcome makes the committee's answer degraded."""
        return self.status != "ok" and not self.superseded

    def as_dict(self) -> dict:
        return {"member": self.name, "model": self.model, "status": self.status, "latency_ms": self.latency_ms,
                "output_length": len(self.output), "output": self.output, "error": self.error}


async def convene(members: list[Member], deadline: Deadline, mode: Mode = "all") -> list[MemberResult]:
    started = time.perf_counter()
    results: dict[str, MemberResult] = {}

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    async def one(member: Member) -> MemberResult:
        try:
            model, text = await member.run(deadline)
        except asyncio.CancelledError:
            raise
        except MemberSkipped as exc:
            return MemberResult(member.name, "skipped", elapsed(), error=exc.message)
        except Exception as exc:  # a failing member is reported, never fatal
            if isinstance(exc, TimeoutError) or getattr(exc, "code", None) == "deadline_exceeded":
                return MemberResult(member.name, "timeout", elapsed(), error="no answer before the deadline")
            # the report reaches the client and the LLM: no internal addresses in it
            return MemberResult(member.name, "error", elapsed(), error=scrub(getattr(exc, "message", None) or str(exc)))
        if not member.valid(text):
            return MemberResult(member.name, "error", elapsed(), model, text, "output failed validation")
        return MemberResult(member.name, "ok", elapsed(), model, text)

    tasks = {asyncio.ensure_future(one(m)): m for m in members}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=deadline.remaining(),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break  # the deadline passed
            for task in done:
                result = task.result()
                results[result.name] = result
            if mode == "first_valid" and any(r.status == "ok" for r in results.values()):
                break
    finally:
        answered = mode == "first_valid" and any(r.status == "ok" for r in results.values())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            name = tasks[task].name
            results.setdefault(name, MemberResult(name, "skipped", elapsed(), error="cancelled: an earlier member "
                                                  "answered", superseded=True) if answered
                               else MemberResult(name, "timeout", elapsed(), error="no answer before the deadline"))
    return [results[m.name] for m in members]


def merge(results: list[MemberResult]) -> str:
    """Dumb on purpose: every member's output between plain, labelled delimiters."""
    blocks = []
    for r in results:
        head = f"=== {r.name}" + (f" ({r.model})" if r.model else "") + f": {r.status} ==="
        body = r.output if r.status == "ok" else f"[no output: {r.error}]"
        blocks.append(f"{head}\n{body}\n=== end of {r.name} ===")
    return "\n\n".join(blocks)


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


AGREEMENT_MAX_CHARS = 10_000  # a dense page is 3-6k characters; 10k against 10k takes about 1 ms


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over the reference's length (1.0 when one side is empty and not both).
    rapidfuzz's C++ (bit-parallel) Levenshtein: the ingress's event loop calls this on every image
    read twice, so it must stay cheap (the pure-Python one froze the loop for seconds on a dense page)."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return Levenshtein.distance(reference, hypothesis) / len(reference)


def agreement(a: str, b: str) -> float:
    """1 - CER between two engines' normalised texts (each capped at AGREEMENT_MAX_CHARS), floored at 0."""
    cap = AGREEMENT_MAX_CHARS
    reference, hypothesis = (normalise(text[:cap * 2])[:cap] for text in (a, b))
    return round(max(0.0, 1.0 - character_error_rate(reference, hypothesis)), 4)
