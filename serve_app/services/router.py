"""The switchboard in the ingress: request features -> RouteDecision, with the classifier either
in this process (placement: ingress, no hop) or behind a handle (placement: deployment)."""

from __future__ import annotations

from typing import Any

from graphs.deadline import Deadline
from graphs.routing import RequestFeatures, RouteDecision, decide
from serve_app.model_client import ModelClient
from serve_app.router_config import RouterSpec
from serve_app.schemas.chat import AudioPart, ChatCompletionRequest, ImagePart
from serve_app.services.roster import OPENAI_MODEL_FAMILIES, Roster

CLASSIFY_BUDGET_S = 5.0


class RouterService:
    def __init__(self, spec: RouterSpec, roster: Roster, handle=None) -> None:
        self._spec = spec
        self._roster = roster
        self._local = None
        self._client = ModelClient("router", handle) if handle is not None else None

    async def start(self) -> None:
        if self._client is None:
            from deployments.router import make_classifier

            self._local = make_classifier(self._spec)
            await self._local.start()

    async def classify(self, text: str, deadline: Deadline) -> dict[str, Any]:
        if self._local is not None:
            from deployments.router import as_dict

            return as_dict(await deadline.run(self._local.classify(text), cap_s=CLASSIFY_BUDGET_S))
        return await self._client.call("classify", text, deadline)

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

    async def decide(self, body: ChatCompletionRequest, deadline: Deadline) -> RouteDecision:
        return await decide(self.features(body), lambda text: self.classify(text, deadline),
                            min_confidence=self._spec.min_confidence, max_chars=self._spec.max_chars)
