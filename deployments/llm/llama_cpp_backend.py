"""llama.cpp in-process through llama-cpp-python: the CPU roster's LLM engine.

Generation runs one token per step on the engine's own thread; between steps the request's cancel
flag is checked, so a caller that leaves stops it within a token. Every OpenAI generation parameter
is mapped by name (llama_cpp_plan), and the answer is read token by token (llama_cpp_generation), so
lengths and usage are counted in tokens."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

from deployments.llm.backend import EngineCounters
from deployments.llm.llama_cpp_generation import Generation
from deployments.llm.llama_cpp_plan import chat_formatter, closing_tokens, plan
from vocabulary.backend_specs import LlamaCppBackend as LlamaCppSpec
from vocabulary.calls import ChatCall
from vocabulary.errors import ModelError, SwitchboardError
from vocabulary.model_source import resolve

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


class LlamaCppBackend:
    """One llama.cpp context, used by one generation at a time (it is not thread-safe)."""

    def __init__(self, spec: LlamaCppSpec) -> None:
        self._spec = spec
        self._llama = None
        self._formatter = None
        self._closers = None
        self._lock = asyncio.Lock()
        # One thread: generation is CPU-bound and the model must not be entered twice.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self.counters = EngineCounters()

    async def start(self) -> None:
        path = resolve(self._spec.source)
        from llama_cpp import Llama

        def load():
            llama = Llama(
                model_path=str(path),
                n_ctx=self._spec.n_ctx,
                n_threads=self._spec.n_threads,
                # The prompt too: llama-cpp-python's default is every CPU, and OpenMP threads spinning
                # at barriers on a busy 2-core machine made a 36-token prompt take 3.6 s (0.6 s on one).
                n_threads_batch=self._spec.n_threads,
                n_batch=self._spec.n_batch,
                verbose=False,
            )
            return llama, chat_formatter(llama), closing_tokens(llama)

        try:
            self._llama, self._formatter, self._closers = await self._run(load)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
        logger.info("llama.cpp model loaded", extra={"model_path": str(path), "n_ctx": self._spec.n_ctx})

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        llama = self._require()
        cancel = threading.Event()
        async with self._lock:
            generation = None
            failed = False
            self.counters.began()
            try:
                generation = await self._run(
                    lambda: Generation(llama, plan(llama, self._formatter, call), self._closers, self.counters))
                while not generation.finished:
                    chunk = await self._run(generation.step, cancel)
                    if chunk is not None:
                        yield chunk
            except SwitchboardError:
                failed = True
                raise
            except Exception as exc:  # llama.cpp's decode failures surface as RuntimeError/ValueError
                failed = True
                logger.exception("llama.cpp generation failed", extra={"request_id": call.request_id})
                raise ModelError(f"llama.cpp failed: {type(exc).__name__}") from exc
            finally:
                self.counters.ended()
                if generation is not None and not generation.finished and not failed:
                    self.counters.cancelled += 1
                cancel.set()  # a step still running sees it; no further step starts
                if generation is not None:
                    self._executor.submit(generation.close)  # on the engine's thread, after that step

    async def check(self) -> None:
        self._require()

    def special_texts(self) -> list[str]:
        """The vocabulary's control and user-defined tokens: what tokenising with special=True parses."""
        import llama_cpp

        llama = self._require()
        vocab = llama._model.vocab
        wanted = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        return [llama_cpp.llama_vocab_get_text(vocab, t).decode("utf-8", "replace") for t in range(llama.n_vocab())
                if llama_cpp.llama_vocab_get_attr(vocab, t) & wanted]

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _require(self):
        if self._llama is None:
            raise ModelError("llama.cpp model is not loaded")
        return self._llama
