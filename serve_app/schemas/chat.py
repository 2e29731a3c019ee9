"""OpenAI-compatible chat completion request.

Every parameter of OpenAI's chat API is either honoured (and a model that cannot honour it is
skipped), informational (user, metadata, ...: logged), or refused with 400 unsupported_parameter.
Fields outside OpenAI's API are ignored, named in the `x-switchboard-ignored` header and logged."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.schemas.text import JSONObject, Text


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """The one error shape of every endpoint (OpenAI's)."""

    error: ErrorDetail


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: Text


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: Text = Field(min_length=1)
    detail: Text | None = None


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: Text = Field(min_length=1, description="Base64-encoded audio.")
    format: Literal["wav", "mp3"]


class AudioPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[Union[TextPart, ImagePart, AudioPart], Field(discriminator="type")]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Text = Field(min_length=1, max_length=64)
    arguments: Text = Field(description="The arguments, as JSON text.")


class ToolCall(BaseModel):
    """A tool call the assistant made earlier in the conversation."""

    model_config = ConfigDict(extra="ignore")
    id: Text = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=128)
    tool_call_id: Text | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _tool_fields(self) -> "ChatMessage":
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs the tool_call_id it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    def attachments(self) -> list[ImagePart | AudioPart]:
        if isinstance(self.content, list):
            return [p for p in self.content if not isinstance(p, TextPart)]
        return []


class AudioOutput(BaseModel):
    """OpenAI's `audio` parameter: the voice and format of a spoken answer."""

    model_config = ConfigDict(extra="ignore")
    voice: Text = "alloy"
    format: Literal["wav", "mp3", "flac", "opus", "pcm"] = "wav"


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: Text = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: Text | None = None
    schema_: JSONObject | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object")
        return self

    def as_call(self) -> dict[str, Any] | None:
        """What the engines get: None for plain text."""
        if self.type == "text":
            return None
        out: dict[str, Any] = {"type": self.type}
        if self.json_schema is not None:
            out["json_schema"] = self.json_schema.model_dump(by_alias=True, exclude_none=True)
        return out


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


# Parameters of OpenAI's chat API that change nothing in the answer: accepted and logged.
INFORMATIONAL = frozenset({"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"})
# Parameters of OpenAI's chat API that no engine here honours: a 400 naming them, never a silent drop.
UNSUPPORTED = {
    "functions": "the deprecated 'functions' API is not served; send 'tools' instead",
    "function_call": "the deprecated 'function_call' is not served; send 'tool_choice' instead",
    "prediction": "predicted outputs are not supported by any model of this roster",
    "web_search_options": "web search is a route here: ask in words, or call /api/search",
    "reasoning_effort": "no model of this roster is a reasoning model",
    "verbosity": "no model of this roster takes a verbosity",
}
MAX_N = 8


class ChatCompletionRequest(BaseModel):
    # Fields outside the model are kept to be named (x-switchboard-ignored) and logged.
    model_config = ConfigDict(extra="allow")

    model: Text = Field("auto", min_length=1, description="A roster entry's name, or 'auto'.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    n: int | None = Field(None, ge=1, le=MAX_N, description=f"Choices to generate, up to {MAX_N}.")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: Annotated[dict[Text, float], Field(max_length=300)] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[JSONObject] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | JSONObject | None = None
    parallel_tool_calls: bool | None = None
    modalities: list[Literal["text", "audio"]] | None = Field(None, description='["text", "audio"] asks for a spoken answer.')
    audio: AudioOutput | None = None
    user: Text | None = Field(None, max_length=256)
    metadata: Annotated[dict[Text, Text], Field(max_length=16)] | None = None
    store: bool | None = None
    service_tier: Text | None = None
    prompt_cache_key: Text | None = None
    safety_identifier: Text | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("a stop sequence must not be empty")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (v or {}).items():
            if not token.isdigit():
                raise ValueError(f"logit_bias keys are token ids; {token!r} is not")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values lie in [-100, 100]; {bias} does not")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ChatCompletionRequest":
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def ignored(self) -> list[str]:
        """Top-level fields outside OpenAI's chat API: ignored, and said so (names fit for a header)."""
        names = sorted(k for k in (self.model_extra or {}) if k not in UNSUPPORTED)
        return [(n if n.isascii() and n.isprintable() and "," not in n else ascii(n)[1:-1].replace(",", "%2C"))[:64]
                for n in names][:32]

    def unsupported(self) -> tuple[str, str] | None:
        """The first OpenAI parameter no engine here honours, with why."""
        for name, why in UNSUPPORTED.items():
            if (self.model_extra or {}).get(name) is not None:
                return name, why
        return None

    def wants_audio(self) -> bool:
        return "audio" in (self.modalities or []) or self.audio is not None
