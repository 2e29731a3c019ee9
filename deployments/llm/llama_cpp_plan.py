"""What llama.cpp is asked to do for one ChatCall, in llama-cpp-python's own names: the prompt in
tokens, how many tokens the answer may take, the sampler's settings, the logit biases and the JSON
grammar. Whatever a client can get wrong is found here, before a token is generated, as a 400.

Facts of llama-cpp-python 0.3.36 this relies on: `Llama.generate` takes `temp`, `top_p`, `top_k`,
`min_p`, `presence_penalty`, `frequency_penalty`, `repeat_penalty`, `logits_processor` and
`stopping_criteria` (create_chat_completion takes no stopping criteria, and only honours a schema
under {"type": "json_object", "schema": ...}: hence generate). The seed is the Llama's (`set_seed`),
read when generate builds its sampler; `LLAMA_DEFAULT_SEED` draws a fresh one. Penalties count the
tokens generated (llama.cpp's penalties sampler, last 64).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from deployments.llm.llama_cpp_grammar import json_grammar
from vocabulary.calls import ChatCall
from vocabulary.errors import InvalidRequest, ModelError

# create_chat_completion's defaults, kept for parameters the client leaves out.
TEMPERATURE, TOP_P, TOP_K, MIN_P = 0.2, 0.95, 40, 0.05


@dataclass(frozen=True)
class GenerationPlan:
    prompt: list[int]
    limit: int  # tokens the answer may take
    sampling: dict[str, Any]  # Llama.generate's keywords, less the logits processor
    stops: list[str]
    bias_ids: np.ndarray | None  # logit_bias: token ids and what is added to their logits
    bias_values: np.ndarray | None
    grammar: str | None  # GBNF the answer must follow (a JSON schema's)
    seed: int | None  # llama.cpp's (32 bits); None: a fresh one
    top_logprobs: int | None  # None: no logprobs


def chat_formatter(llama) -> Any:
    """The formatter create_chat_completion would use: its handler is a closure over it."""
    from llama_cpp import llama_chat_format

    handler = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
               or llama_chat_format.get_chat_completion_handler(llama.chat_format))
    formatter = inspect.getclosurevars(handler).nonlocals.get("chat_formatter")
    if formatter is None:
        raise ModelError(f"llama.cpp chat format {llama.chat_format!r} has no prompt formatter")
    return formatter


def plan(llama, formatter, call: ChatCall) -> GenerationPlan:
    """On the engine's thread (tokenising and parsing a grammar use the model)."""
    try:
        formatted = formatter(messages=call.messages)
    except Exception as exc:  # the template's raise_exception(), or jinja's own errors
        raise InvalidRequest(f"the model's chat template refused these messages: {exc}", param="messages") from exc
    prompt = llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
    template_stops = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
    sampling = {
        "temp": TEMPERATURE if call.temperature is None else call.temperature,
        "top_p": TOP_P if call.top_p is None else call.top_p,
        "top_k": TOP_K, "min_p": MIN_P, "repeat_penalty": 1.0,
        "presence_penalty": call.presence_penalty or 0.0,
        "frequency_penalty": call.frequency_penalty or 0.0,
        "stopping_criteria": formatted.stopping_criteria,
    }
    schema = call.json_schema()
    ids, values = _logit_bias(call.logit_bias, llama.n_vocab())
    return GenerationPlan(
        prompt=prompt, limit=_limit(len(prompt), llama.n_ctx(), call), sampling=sampling,
        stops=[s for s in (call.stop or []) + template_stops if s], bias_ids=ids, bias_values=values,
        grammar=None if schema is None else json_grammar(llama, schema),
        seed=None if call.seed is None else call.seed % 0xFFFFFFFF,  # 0xFFFFFFFF itself: "draw one"
        top_logprobs=(call.top_logprobs or 0) if call.logprobs else None)


def _limit(prompt: int, window: int, call: ChatCall) -> int:
    """Tokens the answer may take: max_tokens, which must fit beside the prompt; without it, what the
    window leaves, cut at max_tokens_cap."""
    if call.max_tokens is not None:
        if prompt + call.max_tokens > window:
            raise InvalidRequest(
                f"This model's maximum context length is {window} tokens; the messages take {prompt} "
                f"and max_tokens asks for {call.max_tokens} more", param="messages", code="context_length_exceeded")
        return call.max_tokens
    room = window - prompt
    if room < 1:
        raise InvalidRequest(f"This model's maximum context length is {window} tokens; the messages take {prompt}",
                             param="messages", code="context_length_exceeded")
    return min(room, call.max_tokens_cap or room)


def _logit_bias(bias: dict[str, float] | None, n_vocab: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not bias:
        return None, None
    try:
        ids = [int(k) for k in bias]
    except ValueError as exc:
        raise InvalidRequest("logit_bias keys must be token ids", param="logit_bias") from exc
    if not all(0 <= i < n_vocab for i in ids):
        raise InvalidRequest(f"logit_bias names a token id outside this model's vocabulary (0..{n_vocab - 1})",
                             param="logit_bias")
    values = np.clip(np.array(list(bias.values()), dtype=np.single), -100.0, 100.0)
    return np.array(ids, dtype=np.intc), values


def closing_tokens(llama) -> tuple[np.ndarray, np.ndarray]:
    """Tokens that only close JSON: inside a string, a quote and then brackets or braces; outside
    one, brackets and braces (spaces may come with either). Inside a string a bracket is only text."""
    strings, values = [], []
    for token in range(llama.n_vocab()):
        text = llama.detokenize([token]).strip(b" ")
        if text.startswith(b'"') and not text[1:].strip(b" ]}"):
            strings.append(token)
        elif text and not text.strip(b" ]}"):
            values.append(token)
    return np.array(strings, dtype=np.intc), np.array(values, dtype=np.intc)
