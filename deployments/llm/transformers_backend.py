"""Hugging Face transformers on CPU: a second, independent text engine (a llama.cpp crash does not
take it down), and the path for HF-format models without vLLM. Loads a GGUF (dequantised) with
`gguf_file=` or an HF model folder."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, AsyncIterator

from deployments.calls import ChatCall
from deployments.executor import EngineThread
from deployments.model_source import resolve
from serve_app.errors import InvalidRequest, ModelError

DEFAULT_MAX_NEW_TOKENS = 512


class TransformersBackend:
    def __init__(self, spec) -> None:
        self._spec = spec
        self._model = None
        self._tokenizer = None
        self._thread = EngineThread("transformers")
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        path = resolve(self._spec.source)

        def load():
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            torch.set_num_threads(self._spec.torch_threads)
            folder, extra = (path.parent, {"gguf_file": path.name}) if path.is_file() else (path, {})
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **extra)
            model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                         dtype=torch.float32, **extra).eval()
            return tokenizer, model

        self._tokenizer, self._model = await self._thread.run(load)

    def _inputs(self, call: ChatCall):
        ids = self._tokenizer.apply_chat_template(call.messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)
        limit = self._spec.n_ctx
        n = ids["input_ids"].shape[1]
        if n + (call.max_tokens or 1) > limit:
            raise InvalidRequest(f"Requested tokens ({n + (call.max_tokens or 1)}) exceed context window of {limit}",
                                 param="messages", code="context_length_exceeded")
        return ids, n

    def _generate_kwargs(self, call: ChatCall) -> dict[str, Any]:
        sampling = call.temperature is not None and call.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": call.max_tokens or DEFAULT_MAX_NEW_TOKENS, "do_sample": sampling,
                                  "pad_token_id": self._tokenizer.eos_token_id}
        if sampling:
            kwargs["temperature"] = call.temperature
            if call.top_p is not None:
                kwargs["top_p"] = call.top_p
        if call.stop:
            kwargs["stop_strings"] = call.stop
            kwargs["tokenizer"] = self._tokenizer
        return kwargs

    def _seed(self, call: ChatCall) -> None:
        if call.seed is not None:
            import torch

            torch.manual_seed(call.seed)

    async def chat(self, call: ChatCall) -> dict[str, Any]:
        self._require()
        cancelled = threading.Event()

        def run():
            inputs, n = self._inputs(call)
            self._seed(call)
            out = self._model.generate(**inputs, **self._generate_kwargs(call), stopping_criteria=_stop_when(cancelled))
            new = out[0][n:]
            text = self._tokenizer.decode(new, skip_special_tokens=True)
            return _trim_stop(text, call.stop), n, len(new)

        async with self._lock:
            try:
                text, prompt_tokens, completion_tokens = await self._thread.run(run)
            except asyncio.CancelledError:
                cancelled.set()  # the caller is gone: generation stops at the next token
                raise
        finish = "length" if completion_tokens >= (call.max_tokens or DEFAULT_MAX_NEW_TOKENS) else "stop"
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": "", "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        from transformers import TextIteratorStreamer

        self._require()
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> dict[str, Any]:
            return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": "",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        async with self._lock:
            inputs, n = await self._thread.run(self._inputs, call)
            streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)

            def run():
                self._seed(call)
                return self._model.generate(**inputs, **self._generate_kwargs(call), streamer=streamer)

            generation = asyncio.ensure_future(self._thread.run(run))
            loop = asyncio.get_running_loop()
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    piece = await loop.run_in_executor(None, next, streamer, None)
                    if piece is None:
                        break
                    if piece:
                        yield chunk({"content": piece})
                out = await generation
                produced = out.shape[1] - n
                yield chunk({}, "length" if produced >= (call.max_tokens or DEFAULT_MAX_NEW_TOKENS) else "stop")
            finally:
                if not generation.done():
                    await asyncio.shield(generation)  # the engine finishes its step; nothing is left behind

    async def check(self) -> None:
        self._require()

    async def close(self) -> None:
        self._thread.close()

    def _require(self):
        if self._model is None:
            raise ModelError("transformers model is not loaded")


def _stop_when(event: threading.Event):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> bool:
            return event.is_set()

    return StoppingCriteriaList([Cancelled()])


def _trim_stop(text: str, stops: list[str] | None) -> str:
    for stop in stops or ():
        at = text.find(stop)
        if at >= 0:
            text = text[:at]
    return text
