"""The switchboard in the ingress: request features -> RouteDecision, with the classifier either
in this process (placement: ingress, no hop) or behind a handle (placement: deployment)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from graphs.chain_order import order
from graphs.deadline import Deadline, DeadlineExpired
from graphs.routing import RequestFeatures, RouteDecision, decide, one_hot
from serve_app.model_client import ModelClient
from serve_app.schemas.chat import AudioPart, ChatCompletionRequest, ImagePart
from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster
from vocabulary.calls import EmbedCall
from vocabulary.router_config import RouterSpec
from vocabulary.errors import DeadlineExceeded
from vocabulary.paths import config_path
from vocabulary.routes import OPENAI_MODEL_FAMILIES

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
CLASSIFY_BUDGET_S = 5.0
ROUTER = "router"  # its name for fault injection and health


class RouterService:
    def __init__(self, spec: RouterSpec, roster: Roster, handle=None) -> None:
        self._spec = spec
        self._roster = roster
        self._local = None
        self._client = ModelClient("router", handle) if handle is not None else None
        self._choice = None  # the model-choice heads of the published router version
        self._rng = random.Random()

    async def start(self) -> None:
        if self._client is None:
            from intent_router.classifier import make_classifier

            self._local = make_classifier(self._spec)
            await self._local.start()
        classifier = self._spec.classifier
        if self._spec.choice.enabled and classifier.kind == "embedding":
            from intent_router.choice_head import LatestChoiceHeads

            self._choice = LatestChoiceHeads(config_path(classifier.artifact_dir), min_rows=self._spec.choice.min_rows,
                                             reload_check_s=classifier.reload_check_s)
            self._roster.order_chain = self.order_chain

    def order_chain(self, family: str, chain: list[str], ctx: RequestContext) -> list[str]:
        """The chain in the order the model-choice heads predict answers best for this request (the
        config order as the prior, with bounded exploration); as configured without a head. One
        ordering per request and chain: a chain asked for again (a committee's member and its final
        turn) gets the same order, so exploration stays one draw per request."""
        heads = self._choice.current() if self._choice is not None else None
        if heads is None:
            return chain
        for made in ctx.choices:
            if made["family"] == family and sorted(made["order"]) == sorted(chain):
                return list(made["order"])
        from intent_router.choice_head import ChoiceFeatures

        facts = ctx.facts
        features = ChoiceFeatures(ctx.embedding, len(facts.text), "image" in facts.attachments,
                                  "audio" in facts.attachments, facts.image_rotation, facts.image_contrast,
                                  facts.audio_seconds)
        scores = heads.scores(family, chain, features)
        if scores is None:
            return chain
        choice = self._spec.choice
        ranked = order(chain, scores, prior_weight=choice.prior_weight, exploration=0.0, rng=self._rng)
        exploration = self._roster.switches.exploration(choice.exploration)
        ordered = order(chain, scores, prior_weight=choice.prior_weight, exploration=exploration,
                        rng=self._rng)
        explored = next((m for m, r in zip(ordered, ranked) if m != r), None)
        doubted = sorted({m for m, s in scores.items() if s < choice.doubt_below} | ({explored} if explored else set()))
        ctx.choices.append({"family": family, "head_version": heads.version, "scores": scores, "order": ordered,
                            "explored": explored is not None, "doubted": doubted})
        return ordered

    async def classify(self, text: str, deadline: Deadline) -> dict[str, Any]:
        await deadline.run(self._roster.faults.before(ROUTER), cap_s=CLASSIFY_BUDGET_S)
        if self._local is not None:
            from intent_router.classifier import as_dict

            result = await deadline.run(self._local.classify(text), cap_s=CLASSIFY_BUDGET_S)
            if deadline.expired():  # the cache and the fast tier answer without a pause: no timeout can cut them
                raise DeadlineExpired("the request's deadline passed while it was being classified")
            return {**as_dict(result), "embedding": getattr(result, "embedding", None)}
        return await self._client.call("classify", text, deadline)

    @property
    def embeddings_model(self) -> str | None:
        """The name /v1/embeddings serves the classifier's encoder under; None without one."""
        return getattr(self._spec.classifier, "embeddings_model", None)  # an embedding classifier's

    async def embedding_info(self, deadline: Deadline) -> dict[str, int]:
        """The encoder's `dimensions` and `max_tokens`."""
        if self._local is not None:
            return self._local.embedding_info()
        return await self._client.call("embedding_info", None, deadline)

    async def embed(self, call: EmbedCall, deadline: Deadline) -> dict[str, Any]:
        """Sentence embeddings from the classifier's own loaded encoder: here, on its thread
        (placement: ingress), or in the router deployment."""
        if self._local is not None:
            return await deadline.run(self._local.embed(call.texts))
        return await self._client.call("embed", call, deadline)

    async def probe(self) -> float:
        result = await self.classify("What is the capital of France?", Deadline(CLASSIFY_BUDGET_S))
        return result["latency_ms"]

    def features(self, body: ChatCompletionRequest) -> RequestFeatures:
        parts = [p for m in body.messages for p in m.attachments()]
        users = [m for m in body.messages if m.role == "user"]
        family = None
        if body.model != "auto":
            spec = self._roster.specs.get(body.model)
            family = spec.family if spec else OPENAI_MODEL_FAMILIES.get(body.model, "llm")
        return RequestFeatures(text=users[-1].text() if users else "",
                               has_image=any(isinstance(p, ImagePart) for p in parts),
                               has_audio=any(isinstance(p, AudioPart) for p in parts),
                               model_family=family)

    async def decide(self, body: ChatCompletionRequest, ctx: RequestContext) -> RouteDecision:
        """The route. A router that fails, times out or has a fault injected sends the request to
        text (the LLM answers), degraded, with the reason; only the request's own deadline is a 504."""
        async def classify(text: str) -> dict[str, Any]:
            if not self._roster.switches.router_on():  # turned off by its flag: the LLM answers text
                return {"intent": "text", "confidence": 1.0, "classifier": "off", "scores": one_hot("text")}
            result = await self.classify(text, ctx.deadline)
            ctx.embedding = result.pop("embedding", None)  # for the choice heads; never sent anywhere
            return result

        try:
            return await decide(self.features(body), classify, min_confidence=self._spec.min_confidence,
                                max_chars=self._spec.max_chars)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if ctx.deadline.expired():
                raise DeadlineExceeded("the request's deadline passed while it was being routed") from None
            reason = f"the router failed ({getattr(exc, 'message', None) or type(exc).__name__}): the LLM answers"
            logger.warning("router failed; routing to text", extra={
                "request_id": ctx.request_id, "error": f"{type(exc).__name__}: {exc}"[:300]})
            ctx.reasons.append(reason)
            return RouteDecision("text", 0.0, "fallback", one_hot("text"), reason)
