"""llama.cpp in-process through llama-cpp-python: the CPU roster's LLM engine.

Generation runs one token per step on the engine's own thread; between steps the request's cancel
flag is checked, so a caller that leaves stops it within a token."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Iterator

from deployments.llm.backend import EngineCounters
from vocabulary.backend_specs import LlamaCppBackend as LlamaCppSpec
from vocabulary.calls import ChatCall
from vocabulary.errors import InvalidRequest, ModelError
from vocabulary.model_source import resolve

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
        self.counters = EngineCounters()

    async def start(self) -> None:
        path = resolve(self._spec.source)
        from llama_cpp import Llama

        def load():
            return Llama(
                model_path=str(path),
                n_ctx=self._spec.n_ctx,
                n_threads=self._spec.n_threads,
                # The prompt too: llama-cpp-python's default is every CPU, and OpenMP threads spinning
                # at barriers on a busy 2-core machine made a 36-token prompt take 3.6 s (0.6 s on one).
                n_threads_batch=self._spec.n_threads,
                n_batch=self._spec.n_batch,
                verbose=False,
            )

        try:
            self._llama = await asyncio.get_running_loop().run_in_executor(self._executor, load)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
        logger.info("llama.cpp model loaded", extra={"model_path": str(path), "n_ctx": self._spec.n_ctx})

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        llama = self._require()
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        kwargs = {"messages": call.messages, "stream": True, **call.sampling()}
        async with self._lock:
            chunks = None
            self.counters.active += 1
            try:
                chunks = await loop.run_in_executor(self._executor, lambda: llama.create_chat_completion(**kwargs))
                produced = [0]
                while True:
                    chunk = await loop.run_in_executor(self._executor, self._step, llama, chunks, cancel, produced)
                    if chunk is _DONE:
                        return
                    yield chunk
            except ValueError as exc:
                raise _input_error(exc) from exc
            finally:
                self.counters.active -= 1
                if not cancel.is_set() and chunks is not None and _unfinished(chunks):
                    self.counters.cancelled += 1
                cancel.set()  # a step still running sees it; no further step starts
                if chunks is not None:
                    self._executor.submit(chunks.close)  # llama's own clean-up, on the engine's thread

    def _step(self, llama, chunks: Iterator[dict[str, Any]], cancel: threading.Event, produced: list[int]):
        """One token, on the engine's thread; none once the request is cancelled. The finishing
        chunk carries the usage (the context holds the prompt and what was generated)."""
        if cancel.is_set():
            return _DONE
        chunk = next(chunks, _DONE)
        if chunk is _DONE:
            return _DONE
        choice = (chunk.get("choices") or [{}])[0]
        if (choice.get("delta") or {}).get("content"):
            produced[0] += 1
            self.counters.produced(1, cancel)
        if choice.get("finish_reason"):
            prompt = max(0, llama.n_tokens - produced[0])
            chunk["usage"] = {"prompt_tokens": prompt, "completion_tokens": produced[0],
                              "total_tokens": prompt + produced[0]}
        return chunk

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


def _unfinished(chunks) -> bool:
    """A generator that has not run to its end: its request was left, not answered."""
    return getattr(chunks, "gi_frame", None) is not None


def _input_error(exc: ValueError) -> InvalidRequest | ModelError:
    text = str(exc)
    if "exceed context window" in text:
        return InvalidRequest(text, param="messages", code="context_length_exceeded")
    return ModelError(f"llama.cpp failed: {text}")
