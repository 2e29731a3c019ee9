"""The committee in the ingress: builds members from a request (each member through its own chain
and breakers), convenes them (graphs/committee.py), merges, and lets the LLM write the answer.
Two vision engines reading the same image give an agreement score: the uncertainty signal."""

from __future__ import annotations

import time
from typing import Any

from graphs.committee import Member, MemberSkipped, agreement, convene, merge
from graphs.deadline import Deadline
from graphs.failover import Failure
from serve_app.media.audio import DecodedAudio
from serve_app.schemas.chat import AudioPart, ChatCompletionRequest, ImagePart
from serve_app.services.audio import AudioService
from serve_app.services.context import RequestContext
from serve_app.services.media_budget import check_part_counts
from serve_app.services.roster import Roster
from serve_app.services.vision import VisionService
from vocabulary.calls import ChatCall, SearchCall, TranscribeCall, VisionCall
from vocabulary.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelError,
    ServiceUnavailable,
)
from vocabulary.routes import ROUTE_FAMILY

ROUTES = ("vision", "stt", "search", "text")
FINAL_TURN_RESERVE_S = 2.0
INTENT_ROUTE = {"search": "search", "text": "text"}  # intents a text-only request can be asked as


class CommitteeService:
    def __init__(self, roster: Roster, audio: AudioService, vision: VisionService) -> None:
        self._roster = roster
        self._audio = audio
        self._vision = vision
        self.spec = roster.config.committee

    # ---- inputs ---------------------------------------------------------------------------

    async def inputs(self, body: ChatCompletionRequest, ctx: RequestContext) -> tuple[list[bytes], list[DecodedAudio]]:
        """Every image and audio part, fetched, decoded and checked before any member runs."""
        check_part_counts([p for m in body.messages for p in m.attachments()], self._roster.config.media)
        images, audios = [], []
        for i, message in enumerate(body.messages):
            for j, part in enumerate(message.attachments()):
                param = f"messages.{i}.content"
                if isinstance(part, ImagePart):
                    images.append(await self._vision.load(part.image_url.url, ctx, param=f"{param}.image_url.url"))
                elif isinstance(part, AudioPart):
                    audios.append(await self._audio.decode_part(part.input_audio.data, f"{param}.input_audio.data",
                                                                ctx))
        return images, audios

    def default_members(self, images: list, audios: list, intents: list[str] = ()) -> list[str]:
        names: list[str] = []
        if images:
            names += self.vision_models() if self.spec.vision_cross_check else ["vision"]
        if audios:
            names.append("stt")
        names += [INTENT_ROUTE[i] for i in intents if i in INTENT_ROUTE and INTENT_ROUTE[i] not in names]
        return names

    def vision_models(self) -> list[str]:
        return self._roster.chain("vision")

    # ---- members --------------------------------------------------------------------------

    def member(self, name: str, body: ChatCompletionRequest, images: list[bytes], audios: list[DecodedAudio],
               ctx: RequestContext) -> Member:
        """A member is a route (its whole failover chain) or one model (with its breaker)."""
        if name in ROUTES:
            family, models = ROUTE_FAMILY[name], None
        elif name in self._roster.specs and self._roster.specs[name].family in ROUTE_FAMILY.values():
            family, models = self._roster.specs[name].family, [name]
        else:
            raise InvalidRequest(f"unknown committee member {name!r}; use a route ({', '.join(ROUTES)}) or a "
                                 f"model of one", param="members")
        chain = models or self._roster.chain(family, ctx=ctx)
        text = _user_text(body)

        async def call(deadline: Deadline, method: str, payload, models: list[str] | None = None) -> tuple[str, Any]:
            # The member's chain shares out the member's deadline, not the request's.
            sub = ctx.child(deadline)
            try:
                return await _skipped_if_open(self._roster.call(family, models or chain, method, payload, sub))
            finally:
                ctx.failures.extend(sub.failures)

        async def run(deadline: Deadline) -> tuple[str, str]:
            return await deadline.run(work(deadline))

        async def work(deadline: Deadline) -> tuple[str, str]:
            if family == "vision":
                if not images:
                    raise InvalidRequest("no image to read")
                outs = [await call(deadline, "read",
                                   lambda _n, d, im=im: VisionCall(ctx.request_id, im, d.remaining()))
                        for im in images]
                return outs[0][0], "\n\n".join(o["text"] for _, o in outs)
            if family == "stt":
                if not audios:
                    raise InvalidRequest("no audio to transcribe")
                outs = [await self._heard(call, deadline, chain, a, ctx) for a in audios]
                return outs[0][0], "\n\n".join(o["text"] for _, o in outs)
            if family == "search":
                model, out = await call(deadline, "search",
                                        lambda _n, d: SearchCall(ctx.request_id, text[:300], d.remaining()))
                return model, "\n".join(f"- {r['title']} ({r['url']}): {r['snippet']}" for r in out["results"])
            model, out = await call(deadline, "chat", lambda _n, d: ChatCall(
                ctx.request_id, [{"role": "user", "content": text}], d.remaining(), max_tokens=128, temperature=0))
            return model, out["choices"][0]["message"]["content"] or ""

        return Member(name, run)

    async def _heard(self, call, deadline: Deadline, chain: list[str], audio: DecodedAudio,
                     ctx: RequestContext) -> tuple[str, dict[str, Any]]:
        """One transcript. An untrusted one (under stt.min_confidence) is checked by asking the
        chain's next STT model too, with the time left; the more confident transcript is kept."""
        def payload(_n, d):
            return TranscribeCall(ctx.request_id, audio.pcm_bytes(), d.remaining())

        model, out = await call(deadline, "transcribe", payload)
        if not self._audio.distrust(out, ctx):
            return model, out
        others = [m for m in chain if m != model]
        if not others or deadline.remaining() <= 0:
            return model, out
        try:
            second_model, second = await call(deadline, "transcribe", payload, others)
        except (ServiceUnavailable, DeadlineExceeded):
            return model, out
        self._audio.distrust(second, ctx)
        return (second_model, second) if second.get("confidence", 0) > out.get("confidence", 0) else (model, out)

    # ---- the whole committee --------------------------------------------------------------

    async def run(self, body: ChatCompletionRequest, ctx: RequestContext, *, names: list[str] | None = None,
                  mode: str | None = None, intents: list[str] = ()) -> dict[str, Any]:
        images, audios = await self.inputs(body, ctx)
        names = names or self.default_members(images, audios, intents)
        if not names:
            raise InvalidRequest("no committee members for this request: name them in 'members'", param="members")
        members = [self.member(n, body, images, audios, ctx) for n in dict.fromkeys(names)]
        # The members get the deadline less a reserve for the final LLM turn.
        remaining = ctx.deadline.remaining()
        started = time.perf_counter()
        results = await convene(members, Deadline(remaining - min(FINAL_TURN_RESERVE_S, remaining / 4)),
                                mode or self.spec.mode)
        members_wall_ms = round((time.perf_counter() - started) * 1000, 2)
        for r in results:
            if r.status == "ok" and r.model:
                ctx.used(r.model)
            elif r.status == "timeout":
                ctx.failures.append(Failure(r.name, DeadlineExceeded(f"{r.name}: no answer before the deadline")))
        report: dict[str, Any] = {"members": [r.as_dict() for r in results], "members_wall_ms": members_wall_ms}
        ctx.committee = {"members": [{"member": r.name, "status": r.status} for r in results]}
        readings = [r for r in results if r.status == "ok" and r.model in self.vision_models()]
        if len(readings) >= 2:
            report["agreement"] = agreement(readings[0].output, readings[1].output)
            report["uncertain"] = report["agreement"] < self.spec.agreement_threshold
            ctx.agreement = report["agreement"]
        merged = merge(results)
        report["merged"] = merged
        answer, degraded = await self._final_turn(body, merged, ctx)
        if degraded and ctx.deadline.expired() and not any(r.status == "ok" for r in results):
            raise DeadlineExceeded("the request's deadline passed before any committee member or the LLM answered")
        report["answer"] = answer
        # A member cancelled because an earlier one already answered (first_valid) is no failure.
        report["degraded"] = degraded or any(r.degrades for r in results)
        return report

    async def cross_read(self, image: bytes, ctx: RequestContext) -> dict[str, Any]:
        """Every vision model reads the same image at once; the first in chain order that answered is
        the reading, and two readings give the agreement score."""
        models = self.vision_models()
        members = [self._vision_member(m, image, ctx) for m in models]
        # The readers get what is left less the LLM-only answer's reserve (resilience.llm_only_reserve_ms).
        readers = ctx.deadline.remaining() - self._roster.timing.reserve(ctx.deadline, 1)
        results = await convene(members, Deadline(readers), "all")
        ctx.failures.extend(Failure(r.name, ModelError(r.error or r.status)) for r in results if r.status != "ok")
        ok = [r for r in results if r.status == "ok"]
        if not ok:
            raise ServiceUnavailable("no vision model could read the image: " +
                                     "; ".join(f"{r.name}: {r.error}" for r in results), code="all_models_failed")
        reading = {"model": ok[0].model, "text": ok[0].output, "members": [r.as_dict() for r in results]}
        if len(ok) >= 2:
            reading["agreement"] = agreement(ok[0].output, ok[1].output)
            reading["uncertain"] = reading["agreement"] < self.spec.agreement_threshold
            ctx.agreement = reading["agreement"]
        for r in ok:
            ctx.used(r.model)
        return reading

    def _vision_member(self, model: str, image: bytes, ctx: RequestContext) -> Member:
        async def run(deadline: Deadline) -> tuple[str, str]:
            sub = ctx.child(deadline)
            name, out = await deadline.run(_skipped_if_open(self._roster.call(
                "vision", [model], "read", lambda _n, d: VisionCall(ctx.request_id, image, d.remaining()), sub)))
            return name, out["text"]

        return Member(model, run, valid=lambda text: True)  # an image with no text is a valid reading

    async def _final_turn(self, body: ChatCompletionRequest, merged: str, ctx: RequestContext) -> tuple[str, bool]:
        messages = [{"role": "system", "content": "Several models looked at the user's request. Their findings, "
                                                  "each between its own delimiters:\n\n" + merged +
                                                  "\n\nAnswer the user from these findings."},
                    {"role": "user", "content": _user_text(body) or "(no text)"}]
        cap = self._roster.config.limits.max_output_tokens
        try:
            chain = self._roster.chain("llm", ctx=ctx)  # ordered for this request by the choice heads
            _, result = await self._roster.call("llm", chain, "chat", lambda _n, d: ChatCall(
                ctx.request_id, messages, d.remaining(), max_tokens=min(body.token_limit(), cap)
                if body.token_limit() else None, max_tokens_cap=cap, temperature=body.temperature, seed=body.seed), ctx)
        except (ServiceUnavailable, DeadlineExceeded):
            ctx.notes.append("the LLM could not write the answer; the members' merged findings are returned")
            return merged, True
        return result["choices"][0]["message"]["content"] or "", False


def _user_text(body: ChatCompletionRequest) -> str:
    users = [m for m in body.messages if m.role == "user"]
    return users[-1].text() if users else ""


async def _skipped_if_open(call):
    """A member whose every model has an open breaker is skipped, not failed."""
    try:
        return await call
    except ServiceUnavailable as exc:
        if exc.code == "circuit_open":
            raise MemberSkipped(exc.message) from None
        raise
