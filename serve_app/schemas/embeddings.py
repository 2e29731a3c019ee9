"""OpenAI-compatible embeddings request and response (POST /v1/embeddings). Unknown top-level
fields are ignored, as in the chat request, so clients written for OpenAI work unchanged."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from serve_app.schemas.text import Text



def _not_empty(text: str) -> str:
    if not text:  # after cleaning: a text of control characters only is empty too
        raise PydanticCustomError("empty_input", "an empty text: there is nothing to embed")
    return text


InputText = Annotated[Text, AfterValidator(_not_empty)]


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings"""

    model_config = ConfigDict(extra="ignore")
    input: InputText | list[InputText] = Field(
        description="A text, or a list of texts, to embed; none may be empty. OpenAI's token arrays are "
                    "refused: this model's tokenizer is not OpenAI's.")
    model: Text = Field(min_length=1, description="The embedding model /v1/models lists (family 'embedding'), or "
                                                  "one of OpenAI's embedding model names, which it serves.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: a list of numbers; base64: the vector's little-endian float32 bytes.")
    dimensions: int | None = Field(None, ge=1, description="Only the model's own size: vectors are not shortened.")
    user: Text | None = Field(None, description="Accepted for compatibility.")

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise PydanticCustomError("empty_input", "an empty list: send at least one text")
            if any(_token(v) or isinstance(v, list) and v and all(map(_token, v)) for v in value):
                raise PydanticCustomError(
                    "token_arrays", "token arrays are not supported: send the text (this model's tokenizer is "
                                    "not OpenAI's)")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int = Field(description="The position of its text in `input`.")
    embedding: list[float] | str = Field(
        description="The L2-normalised vector (cosine similarity is the dot product); with encoding_format "
                    "base64, its little-endian float32 bytes in base64.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens the model read, by its own tokenizer ([CLS] and [SEP] included).")
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
