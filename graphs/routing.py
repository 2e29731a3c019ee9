"""The switchboard's decision: which intent (vision | voice | text | search) a request goes to.

Order: attachments first (an image -> vision, audio -> voice); then a `model` other than auto
(its family decides); then the classifier on the text, cut to `max_chars`. Empty text is text;
a classification below `min_confidence` falls to text, the LLM-only path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from vocabulary.routes import FAMILY_INTENT, INTENTS


@dataclass(frozen=True)
class RequestFeatures:
    text: str
    has_image: bool = False
    has_audio: bool = False
    model_family: str | None = None  # the family of an explicitly named model, None for auto


@dataclass(frozen=True)
class RouteDecision:
    intent: str
    confidence: float
    classifier: str
    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"intent": self.intent, "confidence": self.confidence, "classifier": self.classifier,
                "scores": self.scores, "reason": self.reason, **({"meta": self.meta} if self.meta else {})}


Classify = Callable[[str], Awaitable[dict[str, Any]]]


def one_hot(intent: str) -> dict[str, float]:
    return {i: (1.0 if i == intent else 0.0) for i in INTENTS}


async def decide(features: RequestFeatures, classify: Classify, *, min_confidence: float,
                 max_chars: int) -> RouteDecision:
    if features.has_image:
        return RouteDecision("vision", 1.0, "attachment", one_hot("vision"), "the request has an image")
    if features.has_audio:
        return RouteDecision("voice", 1.0, "attachment", one_hot("voice"), "the request has audio")
    if features.model_family is not None:
        intent = FAMILY_INTENT.get(features.model_family, "text")
        return RouteDecision(intent, 1.0, "model", one_hot(intent), f"the request names a {features.model_family} model")
    text = features.text.strip()
    if not text:
        return RouteDecision("text", 1.0, "empty", one_hot("text"), "no text to classify")
    result = await classify(text[:max_chars])
    scores = result["scores"]
    meta = result.get("meta") or {}
    if result["confidence"] < min_confidence:
        return RouteDecision("text", result["confidence"], result["classifier"], scores,
                             f"low confidence ({result['confidence']:.2f} < {min_confidence}) for "
                             f"{result['intent']}: the LLM answers", meta)
    return RouteDecision(result["intent"], result["confidence"], result["classifier"], scores, "classified", meta)
