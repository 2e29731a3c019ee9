"""The small, serialisable requests that cross a DeploymentHandle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChatCall:
    """One chat completion, as sent from the ingress to an LLM deployment.

    `budget_s` is what was left of the request's deadline when the call was made; the
    deployment counts it from the call's arrival (clocks differ between nodes).
    """

    request_id: str
    messages: list[dict[str, Any]]
    budget_s: float
    max_tokens: int | None = None  # None: the context window less the prompt, up to max_tokens_cap
    max_tokens_cap: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters the client set, OpenAI names."""
        params = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
        }
        return {k: v for k, v in params.items() if v is not None}


PROBE_CALL = dict(messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0)


@dataclass(frozen=True)
class TranscribeCall:
    """Speech to text. `audio` is mono float32 PCM at 16 kHz, already validated by the ingress."""

    request_id: str
    audio: bytes
    budget_s: float
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0


@dataclass(frozen=True)
class SpeechCall:
    """Text to speech. The answer is mono int16 PCM with its sample rate."""

    request_id: str
    text: str
    voice: str
    budget_s: float
    speed: float = 1.0


@dataclass(frozen=True)
class CloneCall:
    """Speak `text` in the voice of `reference` (mono float32 PCM at 16 kHz)."""

    request_id: str
    text: str
    reference: bytes
    budget_s: float
    reference_text: str | None = None


@dataclass(frozen=True)
class VisionCall:
    """Read an image (encoded bytes whose format and size the ingress has checked)."""

    request_id: str
    image: bytes
    budget_s: float
    prompt: str | None = None


@dataclass(frozen=True)
class SearchCall:
    request_id: str
    query: str
    budget_s: float
    max_results: int = 5


SAMPLE_RATE_STT = 16_000
