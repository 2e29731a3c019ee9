"""OpenAI-compatible chat completion request. Unknown top-level fields are ignored, as
OpenAI-compatible servers do, so clients written for OpenAI work unchanged."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.schemas.text import Text


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


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None

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


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Text = Field("auto", min_length=1, description="A roster entry's name, or 'auto'.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: Text | list[Text] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    n: int | None = Field(None, ge=1, le=1, description="Only n=1 is supported.")
    modalities: list[Literal["text", "audio"]] | None = Field(None, description='["text", "audio"] asks for a spoken answer.')
    audio: AudioOutput | None = None

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

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
