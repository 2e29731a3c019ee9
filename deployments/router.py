"""The intent router in a deployment of its own (router.placement: deployment)."""

from __future__ import annotations

import asyncio
from typing import Any

from intent_router.classifier import as_dict, make_classifier
from vocabulary.calls import EmbedCall
from vocabulary.errors import DeadlineExceeded, ModelError
from vocabulary.router_config import RouterSpec
from vocabulary.routes import INTENTS


class RouterDeployment:
    """The classifier in a deployment of its own (router.placement: deployment)."""

    async def __init__(self, spec: RouterSpec) -> None:
        self._classifier = make_classifier(spec)
        await self._classifier.start()
        await self.probe()

    async def classify(self, text: str) -> dict[str, Any]:
        return as_dict(await self._classifier.classify(text))

    async def embed(self, call: EmbedCall) -> dict[str, Any]:
        """/v1/embeddings from the classifier's encoder (an embedding classifier only)."""
        try:
            return await asyncio.wait_for(self._classifier.embed(call.texts), timeout=max(0.0, call.budget_s))
        except TimeoutError as exc:
            raise DeadlineExceeded("the embedding model ran out of time") from exc

    async def embedding_info(self, _: Any = None) -> dict[str, int]:
        return self._classifier.embedding_info()

    async def probe(self) -> float:
        result = await self._classifier.classify("What is the capital of France?")
        if result.intent not in INTENTS:
            raise ModelError("router returned no label")
        return result.latency_ms

    async def check_health(self) -> None:
        if self._classifier is None:
            raise ModelError("router not loaded")
