"""The ingress' view of the roster: which model serves what, in which order, and calling them."""

from __future__ import annotations

from typing import Any, Callable

from graphs.failover import ChainExhausted, first_answer
from serve_app.config import Family, ModelSpec, SwitchboardConfig
from serve_app.errors import (DeadlineExceeded, InvalidRequest, ModelNotFound, ServiceUnavailable,
                              SwitchboardError)
from serve_app.model_client import ModelClient
from serve_app.services.context import RequestContext

# OpenAI's model names, mapped to the roster's default model of the family.
OPENAI_MODEL_FAMILIES: dict[str, Family] = {
    "whisper-1": "stt", "gpt-4o-transcribe": "stt", "gpt-4o-mini-transcribe": "stt",
    "tts-1": "tts", "tts-1-hd": "tts", "gpt-4o-mini-tts": "tts",
}
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")


def is_client_error(exc: BaseException) -> bool:
    """A failure the request caused: the next model would refuse the same input."""
    return isinstance(exc, SwitchboardError) and 400 <= exc.http_status < 500 and exc.http_status != 429


class Roster:
    def __init__(self, config: SwitchboardConfig, clients: dict[str, ModelClient]) -> None:
        self.config = config
        self.specs = config.by_name()
        self.clients = clients

    def chain(self, family: Family, requested: str | None = None, *, param: str = "model") -> list[str]:
        """Models of `family` in the order to try them: the requested one first, then the rest."""
        members = [m.name for m in self.config.family(family)]
        if requested is None or requested == "auto" or OPENAI_MODEL_FAMILIES.get(requested) == family:
            return members
        spec = self.specs.get(requested)
        if spec is None:
            known = ", ".join(["auto", *members, *(k for k, f in OPENAI_MODEL_FAMILIES.items() if f == family)])
            raise ModelNotFound(f"model {requested!r} does not exist; for this endpoint use one of: {known}",
                                param=param)
        if spec.family != family:
            raise InvalidRequest(f"model {requested!r} is a {spec.family} model, not a {family} model", param=param)
        return [requested, *(m for m in members if m != requested)]

    def has(self, family: Family) -> bool:
        return any(m.family == family for m in self.config.models)

    async def call(self, family: Family, models: list[str], method: str, make_payload: Callable[[str], Any],
                   ctx: RequestContext) -> tuple[str, Any]:
        """Try `models` in order (`make_payload(name)` builds each call with the time left); record
        who answered and who failed in `ctx`."""
        if not models:
            raise ServiceUnavailable(f"the roster has no {family} model")

        async def attempt(name: str):
            return await self.clients[name].call(method, make_payload(name), ctx.deadline)

        try:
            result = await first_answer(models, attempt, ctx.deadline, is_client_error=is_client_error)
        except ChainExhausted as exc:
            raise exhausted(family, exc, ctx) from None
        ctx.used(result.model, result.failures)
        return result.model, result.value

    def spec(self, name: str) -> ModelSpec:
        return self.specs[name]


def exhausted(family: str, exc: ChainExhausted, ctx: RequestContext) -> SwitchboardError:
    """The error for a chain with no answer: 504 if the request's deadline ran out, else 503;
    either way naming what failed."""
    ctx.failures.extend(exc.failures)
    if ctx.deadline.expired():
        return DeadlineExceeded(f"the request's deadline passed before a {family} model answered: {exc}")
    return ServiceUnavailable(f"no {family} model could answer: {exc}", code="all_models_failed")
