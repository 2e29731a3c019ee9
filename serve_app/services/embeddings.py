"""Embeddings (POST /v1/embeddings) from the router's encoder: all-MiniLM-L6-v2 is loaded for
routing already (in the ingress, or in the router deployment), so the same copy serves OpenAI's
embeddings API. Its sentence embeddings are 384 floats, L2-normalised (cosine is the dot product),
of at most 256 tokens of text."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import numpy as np

from graphs.deadline import DeadlineExpired
from serve_app.media.pool import MediaPool
from serve_app.schemas.embeddings import EmbeddingRequest
from serve_app.services.context import RequestContext
from serve_app.services.router import RouterService
from vocabulary.calls import EmbedCall
from vocabulary.config import LimitSpec
from vocabulary.errors import InvalidRequest, ModelError, ModelNotFound, PayloadTooLarge, SwitchboardError

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
# OpenAI's embedding model names: a client written for OpenAI gets the encoder's embeddings.
OPENAI_EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")


class EmbeddingService:
    def __init__(self, router: RouterService, limits: LimitSpec, pool: MediaPool) -> None:
        self._router = router
        self._limits = limits
        self._pool = pool  # renders the JSON body (a large float list takes 100 ms) off the event loop
        self._info: dict[str, int] | None = None

    def models(self) -> list[str]:
        """The embedding models /v1/models lists (OpenAI's names are accepted, not listed)."""
        name = self._router.embeddings_model
        return [name] if name else []

    def resolve(self, requested: str) -> str:
        name = self._router.embeddings_model
        if name is None:
            raise ModelNotFound(f"model {requested!r} does not exist: no embedding model is served (it needs the "
                                "router's embedding classifier and its embeddings_model)", param="model")
        if requested != name and requested not in OPENAI_EMBEDDING_MODELS:
            raise ModelNotFound(f"model {requested!r} does not exist or gives no embeddings (embedding models: "
                                f"{name}, or OpenAI's names {', '.join(OPENAI_EMBEDDING_MODELS)})", param="model")
        return name

    async def embed(self, body: EmbeddingRequest, ctx: RequestContext) -> bytes:
        """The response body (JSON bytes) for one request, every input embedded under its deadline."""
        name = self.resolve(body.model)
        texts = body.texts()
        self._check_limits(texts)
        if self._info is None:
            self._info = await self._router.embedding_info(ctx.deadline)
        size = self._info["dimensions"]
        if body.dimensions is not None and body.dimensions != size:
            raise InvalidRequest(f"dimensions: {name} gives {size}-dimensional vectors and cannot shorten them; "
                                 f"send {size} or leave dimensions out", param="dimensions")
        try:
            result = await self._router.embed(EmbedCall(ctx.request_id, texts, ctx.deadline.remaining()),
                                              ctx.deadline)
        except (SwitchboardError, DeadlineExpired, asyncio.CancelledError):
            raise
        except Exception as exc:  # the encoder itself failed (placement: ingress)
            logger.exception("embedding failed", extra={"request_id": ctx.request_id, "model": name})
            raise ModelError(f"the embedding model {name} failed ({type(exc).__name__})") from exc
        ctx.used(name)
        return await self._pool.run(render, result["vectors"], result["tokens"], name, body.encoding_format)

    def _check_limits(self, texts: list[str]) -> None:
        most, longest = self._limits.max_embedding_inputs, self._limits.max_embedding_chars
        if len(texts) > most:
            raise InvalidRequest(f"{len(texts)} inputs, over the limit of {most} per request", param="input")
        for i, text in enumerate(texts):
            if len(text) > longest:
                raise PayloadTooLarge(f"input {i} is {len(text)} characters, over the limit of {longest}",
                                      param="input")


def render(vectors: np.ndarray, tokens: list[int], model: str, encoding_format: str) -> bytes:
    """OpenAI's embeddings response as JSON bytes; base64 carries each vector's little-endian float32
    bytes, float the same float32 values as numbers."""
    rows = np.asarray(vectors, dtype="<f4")
    if encoding_format == "base64":
        encoded = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    else:
        encoded = rows.tolist()
    total = sum(tokens)
    body = {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
            "model": model, "usage": {"prompt_tokens": total, "total_tokens": total}}
    return json.dumps(body, separators=(",", ":")).encode()
