"""Structured output for the transformers engine: the answer is held to a JSON schema by llguidance,
which masks, at every step, the tokens that could not continue a valid document. Once the document
is complete only the end-of-sequence token is allowed, so a constrained answer ends on its own.

Small models under a JSON grammar loop until the token limit, two ways, and each is curbed here:
- whitespace: at most one space between JSON tokens (`whitespace_pattern`, whatever the schema's
  `x-guidance` says), as llama.cpp's JSON grammars allow. SmolLM2 writes better JSON with those
  spaces than with none (one tool call rather than the same call repeated);
- repetition (array items, keys, a string that goes on): past 40% of the answer's limit the tokens
  that close what is open get a growing bonus, so the answer closes in time, as the llama.cpp engine
  does (deployments/llm/llama_cpp_generation.py): inside a string a closing quote, elsewhere
  brackets and braces (which inside a string would be mere text). The grammar still decides what
  is valid."""

from __future__ import annotations

import json
from typing import Any

import torch
from llguidance import LLMatcher, LLTokenizer
from transformers import LogitsProcessor

from deployments.llm.json_closing import OpenString, closing_bonus
from vocabulary.errors import InvalidRequest

# Applied after the schema's own "x-guidance" options, so a client cannot turn free whitespace back on.
OPTIONS = {"whitespace_flexible": True, "whitespace_pattern": "[ ]?"}
ERROR_CHARS = 300  # of llguidance's message about a schema it cannot use


def tokenizer_for(hf_tokenizer) -> LLTokenizer:
    """llguidance's view of a fast Hugging Face tokenizer (about a second: build it once)."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(hf_tokenizer)


def json_matcher(tokenizer: LLTokenizer, schema: dict[str, Any]) -> LLMatcher:
    """A matcher for one answer; a schema llguidance cannot compile is the client's error (400)."""
    try:
        grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=OPTIONS)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"response_format: the JSON schema is not a JSON object: {str(exc)[:ERROR_CHARS]}",
                             param="response_format") from None
    failed, messages = LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)  # warnings are no error
    if failed:
        raise InvalidRequest(f"response_format: the JSON schema cannot be used: {messages[0][:ERROR_CHARS]}",
                             param="response_format")
    return LLMatcher(tokenizer, grammar, log_level=0)


class JsonGrammar(LogitsProcessor):
    """Feeds the matcher the token chosen at the previous step, then leaves only the tokens it allows.
    Should the matcher fail (it never should), only end-of-sequence remains, so generation ends."""

    def __init__(self, matcher: LLMatcher, eos_token_id: int) -> None:
        self._matcher = matcher
        self._eos = eos_token_id
        self._started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._started:
            self._matcher.consume_token(int(input_ids[0, -1]))
        self._started = True
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
        if not self._matcher.is_error():
            mask = torch.frombuffer(bytearray(self._matcher.compute_logit_bias()), dtype=torch.uint8) > 0
            width = min(mask.numel(), allowed.numel())
            allowed[:width] = mask[:width]
        if not allowed.any():
            allowed[self._eos] = True
        return scores.masked_fill(~allowed, float("-inf"))


class Closers:
    """The tokens that only close: a quote then brackets or braces (a string), and brackets or braces
    alone (arrays and objects); spaces may come with either."""

    def __init__(self, tokenizer: LLTokenizer, vocab_size: int) -> None:
        strings, values = [], []
        for token in range(vocab_size):
            text = tokenizer.decode_bytes([token])
            if tokenizer.is_special_token(token) or not text.strip(b" "):
                continue
            if text.startswith(b'"') and not text[1:].strip(b" ]}"):
                strings.append(token)
            elif not text.strip(b" ]}"):
                values.append(token)
        self.string = torch.tensor(strings, dtype=torch.long)
        self.value = torch.tensor(values, dtype=torch.long)


class ClosingBonus(LogitsProcessor):
    """Past CLOSING_FROM of `limit` generated tokens, the closers of what is open get a bonus that
    grows to CLOSING_BONUS at CLOSING_FULL of it. Whether a string is open is read from the bytes
    of the tokens taken (a quote not escaped opens or closes one)."""

    def __init__(self, closers: Closers, token_bytes, prompt_tokens: int, limit: int) -> None:
        self._closers = closers
        self._token_bytes = token_bytes
        self._prompt_tokens = prompt_tokens
        self._limit = max(limit, 1)
        self._string = OpenString()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        produced = input_ids.shape[1] - self._prompt_tokens
        if produced:
            self._string.read(self._token_bytes(int(input_ids[0, -1])))
        ids = self._closers.string if self._string.open else self._closers.value
        bonus = closing_bonus(produced, self._limit)
        if not bonus or not len(ids):
            return scores
        return scores.index_add(1, ids, torch.full((scores.shape[0], len(ids)), bonus, dtype=scores.dtype))
