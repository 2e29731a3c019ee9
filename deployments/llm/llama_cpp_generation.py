"""One answer of llama.cpp, token by token, as OpenAI `chat.completion.chunk`s. Every method runs on
the engine's thread: the Llama is not thread-safe.

Each `step` generates one token (the first also reads the prompt) and returns the chunk it completes,
if any: text is held back while it may be the start of a stop string or of a UTF-8 character. The
answer ends at an end-of-generation token or a stop string ("stop"), or at the plan's limit in
tokens ("length"); the last chunk carries the finish_reason and the usage in tokens.

Logprobs come from the logits llama.cpp left for the token just sampled (`llama_get_logits_ith(ctx,
-1)`, valid until the next decode), log-softmaxed here: the model's own distribution, before biases,
penalties, grammar and temperature (vLLM's default). No `logits_all=True` at load is needed.

Under a JSON grammar (llama_cpp_grammar, applied in the logits processor) a small model repeats
array items or object keys until the limit: SmolLM2-135M ended 1 of 8 prompts with a valid Pet
within 256 tokens. Past 40% of the limit the tokens that only close JSON (quotes, brackets, braces)
get a growing bonus, so the answer closes in time (8 of 8, in 37 to 157 tokens); the grammar still
decides what is valid.

llama-cpp-python keeps the last request's tokens in the context and reads only a new prompt's
unseen tail. llama.cpp's CPU matrix products round differently for one row than for a batch, so a
prompt read in one batch and the same prompt read from the cache give logits that differ in their
last bits, and greedy answers that differ (SmolLM2: 2 of 18 prompts, one of them the second ask of
the same request). Where the answer should repeat (temperature 0, or a seed) the prompt is read
afresh; a sampled answer is random anyway and keeps the cache's speed.
"""

from __future__ import annotations

import codecs
import math
import time
import uuid
from typing import Any

import numpy as np

from deployments.llm.backend import EngineCounters
from deployments.llm.json_closing import OpenString, closing_bonus
from deployments.llm.llama_cpp_grammar import GrammarMask
from deployments.llm.llama_cpp_plan import GenerationPlan
from vocabulary.errors import InvalidRequest



class Generation:
    def __init__(self, llama, plan: GenerationPlan, closers: tuple[np.ndarray, np.ndarray],
                 counters: EngineCounters) -> None:
        import llama_cpp

        self._llama = llama
        self._plan = plan
        self._closers = closers
        self._counters = counters
        self._text = _StopText(plan.stops)
        self._pending: list[tuple[int, int, dict[str, Any]]] = []  # logprobs: (start, end, entry), by chars
        self._id, self._created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        self._role = True
        self._mask = None if plan.grammar is None else GrammarMask(llama, plan.grammar)
        self._dead_end = False  # the grammar allowed no next token
        self._margin = _sampler_margin(plan.sampling)
        self.produced = 0
        self.finished = False
        self._string = OpenString()  # in the JSON being generated (for the closing bonus)
        if plan.seed is not None or plan.sampling["temp"] == 0:
            llama.reset()  # a repeatable answer: see the module's notes on the prompt cache
        llama.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if plan.seed is None else plan.seed)
        adjust = plan.bias_ids is not None or self._mask is not None
        processors = llama_cpp.LogitsProcessorList([self._adjust]) if adjust else None
        self._tokens = llama.generate(plan.prompt, logits_processor=processors, **plan.sampling)

    def step(self, cancel) -> dict[str, Any] | None:
        if self.finished or cancel.is_set():
            return None
        import llama_cpp

        token = next(self._tokens, None)
        if self._dead_end:
            raise InvalidRequest("response_format's JSON schema leads llama.cpp's grammar where nothing may follow",
                                 param="response_format")
        if token is None or llama_cpp.llama_vocab_is_eog(self._llama._model.vocab, token):
            return self._finish("stop")  # (None: the chat format's own stopping criterion)
        if self._mask is not None:
            self._mask.accept(token)
        self.produced += 1
        self._counters.produced(1, cancel)
        piece = self._llama.detokenize([token])
        if self._mask is not None:
            self._string.read(piece)
        start = self._text.decoded
        text = self._text.feed(piece)
        if self._plan.top_logprobs is not None:
            self._pending.append((start, self._text.decoded, self._logprob(token, piece)))
        if self._text.stopped:
            return self._finish("stop", text)
        if self.produced >= self._plan.limit:
            return self._finish("length", text)
        return self._chunk(text) if text else None

    def close(self) -> None:
        self._tokens.close()
        if self._mask is not None:
            self._mask.close()

    def _finish(self, reason: str, text: str = "") -> dict[str, Any]:
        self.finished = True
        chunk = self._chunk(text + self._text.flush(), reason)
        prompt = len(self._plan.prompt)
        chunk["usage"] = {"prompt_tokens": prompt, "completion_tokens": self.produced,
                          "total_tokens": prompt + self.produced}
        return chunk

    def _chunk(self, text: str, finish: str | None = None) -> dict[str, Any]:
        delta: dict[str, Any] = {"role": "assistant"} if self._role else {}
        self._role = False
        if text:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "logprobs": self._released(finish is not None), "finish_reason": finish}
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": "",
                "choices": [choice]}

    def _released(self, final: bool) -> dict[str, Any] | None:
        """The logprobs of the tokens whose text has been sent (at the end: that begins before the cut)."""
        if self._plan.top_logprobs is None:
            return None
        sent = self._text.sent
        if final and self._text.stopped:
            out = [entry for start, _, entry in self._pending if start < sent]
            self._pending = []
        elif final:
            out, self._pending = [entry for _, _, entry in self._pending], []
        else:
            n = 0
            for start, end, _ in self._pending:
                if not (sent >= end if end > start else sent > start):
                    break
                n += 1
            out, self._pending = [entry for _, _, entry in self._pending[:n]], self._pending[n:]
        return {"content": out, "refusal": None}

    def _adjust(self, input_ids, scores):
        """llama-cpp-python's logits processor: the first sampler of the chain, logits in token order.
        Called from C, it must not raise: a grammar's dead end leaves only the end token, and `step`
        reports it."""
        if self._plan.bias_ids is not None:
            scores[self._plan.bias_ids] += self._plan.bias_values
        if self._mask is not None:
            bonus = closing_bonus(self.produced, self._plan.limit)
            closers = self._closers[0] if self._string.open else self._closers[1]
            if bonus and len(closers):
                scores[closers] += bonus
            if not self._mask.apply(scores, self._margin):
                self._dead_end = True
                scores[:] = -np.inf
                scores[self._llama.token_eos()] = 0.0
        return scores

    def _logprob(self, token: int, piece: bytes) -> dict[str, Any]:
        import llama_cpp

        n_vocab = self._llama.n_vocab()
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llama.ctx, -1), shape=(n_vocab,))
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        entry = _token(piece, logprobs[token])
        n = self._plan.top_logprobs
        top = np.argpartition(-logprobs, n)[:n] if n else []
        entry["top_logprobs"] = [_token(self._llama.detokenize([int(i)]), logprobs[i])
                                 for i in sorted(top, key=lambda i: -logprobs[i])]
        return entry


def _sampler_margin(sampling: dict[str, Any]) -> float | None:
    """How far below the best token llama-cpp-python's sampler may still draw one: nothing for greedy,
    ln(1/min_p) when min_p is in its chain; unknown (None) once penalties move logits after us."""
    if sampling["presence_penalty"] or sampling["frequency_penalty"] or sampling["repeat_penalty"] != 1.0:
        return None
    if sampling["temp"] == 0:
        return 0.0
    return -math.log(sampling["min_p"]) if sampling["temp"] > 0 and sampling["min_p"] > 0 else None


def _token(piece: bytes, logprob) -> dict[str, Any]:
    return {"token": piece.decode("utf-8", errors="replace"), "logprob": float(logprob), "bytes": list(piece)}


class _StopText:
    """Token bytes in, text out: whole UTF-8 characters, cut before the first stop string. A tail that
    could begin a stop string is held back until it cannot."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self.decoded = 0  # characters decoded so far
        self.sent = 0  # characters handed out so far
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        new = self._decoder.decode(piece)
        self.decoded += len(new)
        held = self._held + new
        cuts = [at for at in (held.find(s) for s in self._stops) if at >= 0]
        if cuts:
            self.stopped, self._held = True, ""
            return self._send(held[:min(cuts)])
        keep = max((k for s in self._stops for k in range(min(len(s) - 1, len(held)), 0, -1)
                    if held.endswith(s[:k])), default=0)
        self._held = held[len(held) - keep:] if keep else ""
        return self._send(held[:len(held) - keep])

    def flush(self) -> str:
        """At the end: what was held back (nothing after a stop string)."""
        if self.stopped:
            return ""
        rest, self._held = self._held + self._decoder.decode(b"", final=True), ""
        return self._send(rest)

    def _send(self, text: str) -> str:
        self.sent += len(text)
        return text
