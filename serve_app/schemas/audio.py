"""OpenAI-compatible audio request bodies, and the native /api/voice ones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.schemas.chat import ChatMessage
from serve_app.schemas.text import Text

TranscriptFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
SpeechFormat = Literal["wav", "pcm", "mp3", "opus", "flac"]


class SpeechRequest(BaseModel):
    """POST /v1/audio/speech"""

    model_config = ConfigDict(extra="ignore")
    model: Text = Field("tts-1", min_length=1)
    input: Text = Field(min_length=1, description="The text to speak.")
    voice: Text = Field("alloy", min_length=1, description="A configured voice, or one of OpenAI's voice names.")
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: Text | None = Field(None, description="Accepted for compatibility; ignored by these voices.")


class TTSRequest(BaseModel):
    """POST /api/voice/tts"""

    model_config = ConfigDict(extra="forbid")
    text: Text = Field(min_length=1)
    voice: Text = "alloy"
    model: Text = "auto"
    format: SpeechFormat = "wav"
    speed: float = Field(1.0, ge=0.25, le=4.0)


class SearchRequest(BaseModel):
    """POST /api/search"""

    model_config = ConfigDict(extra="forbid")
    query: Text = Field(min_length=1, max_length=1000)
    max_results: int = Field(5, ge=1, le=25)
    model: Text = "auto"


class SearchResult(BaseModel):
    title: str
    url: str
    snippet: str


class Provenance(BaseModel):
    models: list[str]
    degraded: bool
    failed: list[str]
    notes: list[str]


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]
    model: str
    switchboard: Provenance


class Segment(BaseModel):
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float
    confidence: float
    no_speech_prob: float


class TranscriptResponse(BaseModel):
    text: str
    language: str = Field(description="The language spoken: detected, or the one asked for (ISO 639-1 code).")
    language_probability: float = Field(description="The detection's probability (1.0 when the language was given "
                                                    "or the model knows one language only).")
    duration: float
    confidence: float
    segments: list[Segment]
    model: str
    switchboard: Provenance


class VisionLine(BaseModel):
    text: str
    box: list[list[float]] | None
    confidence: float | None


class VisionResponse(BaseModel):
    text: str
    lines: list[VisionLine]
    model: str
    switchboard: Provenance


class CloneResponse(BaseModel):
    audio: str = Field(description="Base64 of the audio in `format`.")
    format: SpeechFormat
    sample_rate: int
    cloned: bool = Field(description="False when no clone model could answer and the plain voice spoke.")
    model: str
    switchboard: Provenance


class CommitteeRequest(BaseModel):
    """POST /api/committee"""

    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1,
                                        description="Chat messages, content parts as in chat completions.")
    members: list[Text] | None = Field(None, min_length=1, max_length=8,
                                       description="Routes (vision, stt, search, text) or model names.")
    mode: Literal["all", "first_valid"] | None = None
    deadline_ms: int | None = Field(None, gt=0, description="Total deadline (capped by config).")
    max_tokens: int | None = Field(None, ge=1, le=32768)


class CommitteeMember(BaseModel):
    member: str
    model: str | None
    status: Literal["ok", "error", "timeout", "skipped"]
    latency_ms: float
    output_length: int
    output: str
    error: str | None


class CommitteeResponse(BaseModel):
    answer: str
    degraded: bool
    agreement: float | None = None
    uncertain: bool | None = None
    members: list[CommitteeMember]
    members_wall_ms: float = Field(description="Wall time of the parallel members (before the final turn).")
    merged: str
    switchboard: Provenance
