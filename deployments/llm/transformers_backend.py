"""Hugging Face transformers on CPU: a second, independent text engine (a llama.cpp crash does not
take it down), and the path for HF-format models without vLLM. Loads a GGUF (dequantised) with
`gguf_file=` or an HF model folder.

`generate` runs on the engine's thread with a streamer that counts every token it is handed and a
stopping criterion that reads the request's cancel flag: a stream that is closed or cancelled stops
generation at the next token."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, AsyncIterator

from deployments.llm.backend import EngineCounters
from vocabulary.calls import ChatCall
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import InvalidRequest, ModelError
from vocabulary.model_source import resolve

PIECE_WAIT_S = 300.0  # the streamer's queue wait; generation ends (or is cancelled) long before


class TransformersBackend:
    def __init__(self, spec) -> None:
        self._spec = spec
        self._model = None
        self._tokenizer = None
        self._thread = EngineThread("transformers")
        self._reader = EngineThread("transformers-reader")  # waits on the streamer's queue
        self._lock = asyncio.Lock()
        self.counters = EngineCounters()

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
        room = limit - n
        return ids, n, min(call.max_tokens or room, room, call.max_tokens_cap or room)

    def _generate_kwargs(self, call: ChatCall, max_new: int) -> dict[str, Any]:
        sampling = call.temperature is not None and call.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": sampling,
                                  "pad_token_id": self._tokenizer.eos_token_id}
        if sampling:
            kwargs["temperature"] = call.temperature
            if call.top_p is not None:
                kwargs["top_p"] = call.top_p
        if call.stop:
            kwargs["stop_strings"] = call.stop
            kwargs["tokenizer"] = self._tokenizer
        return kwargs

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        self._require()
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> dict[str, Any]:
            return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": "",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        cancel = threading.Event()  # the caller left or ran out of time
        enough = threading.Event()  # a stop string was found
        async with self._lock:
            inputs, n, max_new = await self._thread.run(self._inputs, call)
            streamer = _counting_streamer(self._tokenizer, cancel, self.counters)

            def run():
                if call.seed is not None:
                    import torch

                    torch.manual_seed(call.seed)
                return self._model.generate(**inputs, **self._generate_kwargs(call, max_new), streamer=streamer,
                                            stopping_criteria=_stop_when(cancel, enough))

            self.counters.active += 1
            generation = asyncio.ensure_future(self._thread.run(run))
            text = _StopFilter(call.stop)
            role = {"role": "assistant"}
            finished = False
            try:
                while True:
                    piece = await self._reader.run(next, streamer, None)
                    if piece is None:
                        break
                    out, stopped = text.feed(piece)
                    if out:
                        yield chunk({**role, "content": out})
                        role = {}
                    if stopped:
                        enough.set()  # the stop string is here: nothing more is needed
                        break
                tail = text.flush()
                if tail:
                    yield chunk({**role, "content": tail})
                out = await generation
                produced = out.shape[1] - n
                finished = True
                final = chunk({}, "length" if produced >= max_new and not text.stopped else "stop")
                final["usage"] = {"prompt_tokens": n, "completion_tokens": int(produced),
                                  "total_tokens": n + int(produced)}
                yield final
            finally:
                self.counters.active -= 1
                if not finished and not cancel.is_set():
                    self.counters.cancelled += 1
                cancel.set()  # generation stops at its next token; the engine thread serialises the next call

    async def check(self) -> None:
        self._require()

    async def close(self) -> None:
        self._thread.close()
        self._reader.close()

    def _require(self):
        if self._model is None:
            raise ModelError("transformers model is not loaded")


class _StopFilter:
    """Text as it streams, cut before the first stop string; a possible start of one is held back."""

    def __init__(self, stops: list[str] | None) -> None:
        self._stops = [s for s in stops or () if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> tuple[str, bool]:
        self._pending += piece
        cuts = [at for at in (self._pending.find(s) for s in self._stops) if at >= 0]
        if cuts:
            out, self._pending, self.stopped = self._pending[:min(cuts)], "", True
            return out, True
        keep = len(self._pending) - self._hold
        out, self._pending = (self._pending[:keep], self._pending[keep:]) if keep > 0 else ("", self._pending)
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return "" if self.stopped else out


def _counting_streamer(tokenizer, cancel: threading.Event, counters: EngineCounters):
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        """Every generated token passes through put(): counted here, by the engine."""

        def put(self, value) -> None:
            if not self.next_tokens_are_prompt:
                counters.produced(int(value.numel()), cancel)
            super().put(value)

    return CountingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=PIECE_WAIT_S)


def _stop_when(*events: threading.Event):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs) -> bool:
            return any(event.is_set() for event in events)

    return StoppingCriteriaList([Cancelled()])
