"""POST /api/feedback: a person's verdict on one answer, and what should have happened instead."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.schemas.text import Text

Intent = Literal["vision", "voice", "text", "search"]


class Correction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: Intent | None = Field(None, description="The route the request should have taken.")
    model: Text | None = Field(None, max_length=64, description="The model that should have answered.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=r"^[A-Za-z0-9._:+/=@-]{1,128}$",
                            description="The x-request-id of the answer this is about.")
    rating: Literal["up", "down"]
    correction: Correction | None = Field(
        None, description="A +1 reward for the corrected choice in that request's context, -1 for the one used.")
    comment: Text | None = Field(None, max_length=2000, description="Free text; personal data is redacted.")


class FeedbackResponse(BaseModel):
    stored: bool
    request_id: str
