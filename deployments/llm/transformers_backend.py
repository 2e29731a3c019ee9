"""Hugging Face transformers on CPU: a second, independent text engine (a llama.cpp crash does not
take it down), and the path for HF-format models without vLLM. Loads a GGUF (dequantised) with
`gguf_file=` or an HF model folder.

Every OpenAI generation parameter is honoured: lengths in tokens of the context window, stop strings
(deployments/llm/token_stream.py), presence and frequency penalties, logit_bias and logprobs
(deployments/llm/logits_processors.py), a JSON schema or object through llguidance
(deployments/llm/json_grammar.py), temperature, top_p and seed.

`generate` runs on the engine's thread with a streamer that counts every token it is handed and a
stopping criterion that reads the request's cancel flag: a stream that is closed or cancelled stops
generation at the next token."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from deployments.llm.backend import EngineCounters
from deployments.llm.token_stream import StopFilter as _StopFilter  # noqa: F401 (tests/unit/test_chat_chunks.py)
from vocabulary.calls import ChatCall
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import InvalidRequest, ModelError
from vocabulary.model_source import resolve

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


@dataclass
class _Plan:
    """One call made ready on the engine's thread: its inputs, its token budget, its processors."""

    inputs: Any
    prompt_tokens: int
    max_new: int
    processors: list
    recorder: Any  # a LogprobRecorder, or None when no logprobs were asked for


class TransformersBackend:
    def __init__(self, spec) -> None:
        self._spec = spec
        self._model = None
        self._tokenizer = None
        self._grammar_tokenizer = None  # llguidance's view of the tokenizer: JSON grammars, token bytes
        self._closers = None  # the tokens that only close JSON
        self._thread = EngineThread("transformers")
        self._lock = asyncio.Lock()
        self.counters = EngineCounters()

    async def start(self) -> None:
        path = resolve(self._spec.source)

        def load():
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from deployments.llm.json_grammar import Closers, tokenizer_for

            torch.set_num_threads(self._spec.torch_threads)
            folder, extra = (path.parent, {"gguf_file": path.name}) if path.is_file() else (path, {})
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **extra)
            model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                         dtype=torch.float32, **extra).eval()
            grammar_tokenizer = tokenizer_for(tokenizer)  # ValueError for a slow tokenizer
            return tokenizer, model, grammar_tokenizer, Closers(grammar_tokenizer, model.config.vocab_size)

        try:
            self._tokenizer, self._model, self._grammar_tokenizer, self._closers = await self._thread.run(load)
        except ValueError as exc:
            raise ModelError(f"transformers could not load {path}: {exc}") from exc
        logger.info("transformers model loaded", extra={"model_path": str(path), "n_ctx": self._spec.n_ctx})

    def _plan(self, call: ChatCall) -> _Plan:
        """Checks the call against the model (InvalidRequest before any chunk) and prepares it."""
        from deployments.llm import logits_processors as lp

        try:
            inputs = self._tokenizer.apply_chat_template(call.messages, add_generation_prompt=True,
                                                         return_tensors="pt", return_dict=True)
        except Exception as exc:  # the template's raise_exception(), or jinja's own errors
            raise InvalidRequest(f"the model's chat template refused these messages: {exc}", param="messages") from exc
        n, limit = inputs["input_ids"].shape[1], self._spec.n_ctx
        if n + (call.max_tokens or 1) > limit:
            raise InvalidRequest(f"Requested tokens ({n + (call.max_tokens or 1)}) exceed context window of {limit}",
                                 param="messages", code="context_length_exceeded")
        room = limit - n
        max_new = call.max_tokens or min(room, call.max_tokens_cap or room)

        recorder = lp.LogprobRecorder() if call.logprobs else None
        processors: list = [recorder] if recorder is not None else []  # the model's own distribution
        if call.presence_penalty or call.frequency_penalty:
            processors.append(lp.OpenAIPenalties(n, call.presence_penalty or 0.0, call.frequency_penalty or 0.0))
        if call.logit_bias:
            processors.append(lp.LogitBias(lp.parse_logit_bias(call.logit_bias, self._model.config.vocab_size)))
        schema = call.json_schema()
        if schema is not None:
            from deployments.llm.json_grammar import ClosingBonus, JsonGrammar, json_matcher

            matcher = json_matcher(self._grammar_tokenizer, schema)
            processors += [ClosingBonus(self._closers, self._token_bytes, n, max_new),
                           JsonGrammar(matcher, self._tokenizer.eos_token_id)]
        if _samples(call):
            processors += lp.sampling_warpers(call.temperature, call.top_p)
        return _Plan(inputs, n, max_new, processors, recorder)

    def _generate(self, plan: _Plan, call: ChatCall, streamer, stop: threading.Event, cancel: threading.Event):
        import torch
        from transformers import LogitsProcessorList

        if call.seed is not None:
            torch.manual_seed(call.seed)
        # Sampling is shaped by the plan's processors, after the grammar: generate adds none (no top_k of 50).
        sampling = {"do_sample": True, "top_k": 0} if _samples(call) else {"do_sample": False}
        try:
            with torch.inference_mode():
                return self._model.generate(**plan.inputs, **sampling, max_new_tokens=plan.max_new,
                                            pad_token_id=self._tokenizer.eos_token_id, streamer=streamer,
                                            logits_processor=LogitsProcessorList(plan.processors),
                                            stopping_criteria=_stop_when(cancel, stop))
        finally:
            streamer.end()  # also when generate failed: the reader must not wait for ever

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        from deployments.llm.token_stream import TokenStream

        self._require()
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict, finish: str | None = None, logprobs: list | None = None) -> dict[str, Any]:
            return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": "",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                 "logprobs": {"content": logprobs or []} if call.logprobs else None}]}

        cancel = threading.Event()  # the caller left or ran out of time
        async with self._lock:
            plan = await self._thread.run(self._plan, call)
            stream = TokenStream(self._tokenizer, self._token_bytes, call.stop, plan.recorder,
                                 call.top_logprobs or 0, cancel, self.counters)
            self.counters.began()
            generation = asyncio.ensure_future(
                self._thread.run(self._generate, plan, call, stream, stream.found_stop, cancel))
            role = {"role": "assistant"}
            finished = False
            try:
                while (piece := await stream.next_piece()) is not None:
                    text, logprobs = piece
                    yield chunk({**role, "content": text}, logprobs=logprobs)
                    role = {}
                try:
                    out = await generation
                except Exception as exc:  # torch's or transformers' own failures: the engine's, not the client's
                    logger.exception("transformers generation failed", extra={"request_id": call.request_id})
                    raise ModelError("transformers generation failed") from exc
                produced = int(out.shape[1]) - plan.prompt_tokens
                ended = produced > 0 and int(out[0, -1]) in self._eos_ids()
                cut = produced >= plan.max_new and not ended and not stream.found_stop.is_set()
                finished = True
                final = chunk({}, "length" if cut else "stop")
                final["usage"] = {"prompt_tokens": plan.prompt_tokens, "completion_tokens": produced,
                                  "total_tokens": plan.prompt_tokens + produced}
                yield final
            finally:
                self.counters.ended()
                if not finished and not cancel.is_set():
                    self.counters.cancelled += 1
                cancel.set()  # generation stops at its next token; the engine thread serialises the next call

    async def check(self) -> None:
        self._require()

    def special_texts(self) -> list[str]:
        """Every added token: a Hugging Face tokenizer splits them out of any text, special or not."""
        self._require()
        return [t.content for t in self._tokenizer.added_tokens_decoder.values()] + \
            list(self._tokenizer.all_special_tokens)

    async def close(self) -> None:
        self._thread.close()

    def _require(self):
        if self._model is None:
            raise ModelError("transformers model is not loaded")

    def _token_bytes(self, token: int) -> bytes:
        return self._grammar_tokenizer.decode_bytes([token])

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) | {self._tokenizer.eos_token_id}


def _samples(call: ChatCall) -> bool:
    return call.temperature is not None and call.temperature > 0


def _stop_when(*events: threading.Event):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        """The caller left, or a stop string was found: no further token is needed."""

        def __call__(self, input_ids, scores, **kwargs) -> bool:
            return any(event.is_set() for event in events)

    return StoppingCriteriaList([Cancelled()])
