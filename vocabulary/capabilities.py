"""What an LLM of the roster can do, and what a chat request needs from it.

Each roster entry declares its capabilities (defaults by engine, overridable in config); a request's
needs filter every failover chain before the walk, so failover never lands on a model that would
quietly ignore a requirement (a JSON schema, tools, logprobs)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from vocabulary.config_base import StrictModel

# A need -> the request parameter that carries it (named in a 400 unsupported_parameter).
NEED_PARAMS = {"json_schema": "response_format", "tools": "tools", "logprobs": "logprobs",
               "image_input": "messages"}


class Capabilities(StrictModel):
    """What one LLM honours. `context_window` is in tokens (None: unknown, never ruled out by length)."""

    context_window: int | None = Field(None, ge=1)
    json_schema: bool = Field(False, description="response_format json_object / json_schema, constrained.")
    tools: bool = Field(False, description="tools and tool_choice, with tool_calls whose arguments fit the schema.")
    logprobs: bool = Field(False, description="logprobs and top_logprobs.")
    image_input: bool = Field(False, description="Images go to the model itself (else OCR reads them first).")

    def has(self, need: str) -> bool:
        return bool(getattr(self, need))


class CapabilityOverrides(StrictModel):
    """A roster entry's `capabilities:`: only what differs from its engine's defaults."""

    context_window: int | None = Field(None, ge=1)
    json_schema: bool | None = None
    tools: bool | None = None
    logprobs: bool | None = None
    image_input: bool | None = None

    def apply(self, base: Capabilities) -> Capabilities:
        changes = {k: v for k, v in self.model_dump().items() if v is not None}
        return base.model_copy(update=changes)


def engine_capabilities(backend: Any) -> Capabilities:
    """Defaults by engine. In-process engines constrain their own decoding (tools ride on it);
    upstream servers and vLLM are passed everything and are trusted to honour it."""
    kind = backend.kind
    if kind in ("llama_cpp", "transformers"):
        return Capabilities(context_window=backend.n_ctx, json_schema=True, tools=True, logprobs=True)
    if kind == "vllm":
        window = (backend.engine_kwargs or {}).get("max_model_len")
        return Capabilities(context_window=window, json_schema=True, tools=True, logprobs=True)
    if kind == "upstream":
        return Capabilities(json_schema=True, tools=True, logprobs=True)
    return Capabilities()


def request_needs(response_format: dict | None, tools: list | None, tool_choice: Any, logprobs: bool | None, *,
                  tool_history: bool = False) -> list[str]:
    """The capabilities a chat request needs, in a stable order. Tool calls and results in the history
    need a model that reads them, even when no tool may be called now."""
    needs = []
    if response_format and response_format.get("type") in ("json_object", "json_schema"):
        needs.append("json_schema")
    if (tools and tool_choice != "none") or tool_history:
        needs.append("tools")
    if logprobs:
        needs.append("logprobs")
    return needs
