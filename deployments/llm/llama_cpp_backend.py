"""llama.cpp in-process through llama-cpp-python: the CPU roster's LLM engine."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

from deployments.calls import ChatCall
from deployments.model_source import resolve
from serve_app.backend_specs import LlamaCppBackend as LlamaCppSpec
from serve_app.errors import InvalidRequest, ModelError

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
_DONE = object()


class LlamaCppBackend:
    """One llama.cpp context, used by one generation at a time (it is not thread-safe)."""

    def __init__(self, spec: LlamaCppSpec) -> None:
        self._spec = spec
        self._llama = None
        self._lock = asyncio.Lock()
        # One thread: generation is CPU-bound and the model must not be entered twice.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")

    async def start(self) -> None:
        path = resolve(self._spec.source)
        from llama_cpp import Llama

        def load():
            return Llama(
                model_path=str(path),
                n_ctx=self._spec.n_ctx,
                n_threads=self._spec.n_threads,
                n_batch=self._spec.n_batch,
                verbose=False,
            )

        try:
            self._llama = await asyncio.get_running_loop().run_in_executor(self._executor, load)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
        logger.info("llama.cpp model loaded", extra={"model_path": str(path), "n_ctx": self._spec.n_ctx})

    def _kwargs(self, call: ChatCall, stream: bool) -> dict[str, Any]:
        return {"messages": call.messages, "stream": stream, **call.sampling()}

    async def chat(self, call: ChatCall) -> dict[str, Any]:
        llama = self._require()
        async with self._lock:
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._executor, lambda: llama.create_chat_completion(**self._kwargs(call, False))
                )
            except ValueError as exc:
                raise _input_error(exc) from exc

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        llama = self._require()
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                chunks = await loop.run_in_executor(
                    self._executor, lambda: llama.create_chat_completion(**self._kwargs(call, True))
                )
                while True:
                    chunk = await loop.run_in_executor(self._executor, next, chunks, _DONE)
                    if chunk is _DONE:
                        return
                    yield chunk
            except ValueError as exc:
                raise _input_error(exc) from exc

    async def check(self) -> None:
        self._require()

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _require(self):
        if self._llama is None:
            raise ModelError("llama.cpp model is not loaded")
        return self._llama


def _input_error(exc: ValueError) -> InvalidRequest | ModelError:
    text = str(exc)
    if "exceed context window" in text:
        return InvalidRequest(text, param="messages", code="context_length_exceeded")
    return ModelError(f"llama.cpp failed: {text}")
