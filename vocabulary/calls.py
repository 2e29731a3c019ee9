"""The small, serialisable requests that cross a DeploymentHandle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class ChatCall:
    """One chat completion, as sent from the ingress to an LLM deployment, in OpenAI's names.

    `budget_s` is what was left of the request's deadline when the call was made; the
    deployment counts it from the call's arrival (clocks differ between nodes).

    Lengths: `max_tokens` is what the client asked for (already capped); with None the answer may
    use the context window less the prompt, up to `max_tokens_cap` tokens (as vLLM does). Engines
    count both in tokens.

    `response_format` is OpenAI's object: {"type": "text"}, {"type": "json_object"} or
    {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}. `tools`, `tool_choice`
    and `parallel_tool_calls` are OpenAI's too; in-process engines never see them (the LLM
    deployment turns them into a json_schema call, deployments/llm/tool_calls.py), upstream
    servers get them as they are.
    """

    request_id: str
    messages: list[dict[str, Any]]
    budget_s: float
    max_tokens: int | None = None
    max_tokens_cap: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def sampling(self) -> dict[str, Any]:
        """Every generation parameter the client set, OpenAI names (what an upstream server gets)."""
        params = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "logit_bias": self.logit_bias,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "response_format": self.response_format,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
        }
        return {k: v for k, v in params.items() if v is not None}

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must follow: {} (any JSON object) for json_object, the
        schema for json_schema, None for free text."""
        fmt = self.response_format or {}
        if fmt.get("type") == "json_object":
            return {"type": "object"}
        if fmt.get("type") == "json_schema":
            return (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        return None


PROBE_CALL = dict(messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0)


@dataclass(frozen=True)
class TranscribeCall:
    """Speech to text. `audio` is mono float32 PCM at 16 kHz, already validated by the ingress.
    `task` is Whisper's: "transcribe" (in the language spoken) or "translate" (into English)."""

    request_id: str
    audio: bytes
    budget_s: float
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    task: Literal["transcribe", "translate"] = "transcribe"


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
class EmbedCall:
    """Sentence embeddings of `texts` (counted and bounded by the ingress) from the router's encoder.
    The answer: {"vectors": float32 array, one L2-normalised row per text, "tokens": [count per text]}."""

    request_id: str
    texts: list[str]
    budget_s: float


@dataclass(frozen=True)
class SearchCall:
    request_id: str
    query: str
    budget_s: float
    max_results: int = 5


SAMPLE_RATE_STT = 16_000
