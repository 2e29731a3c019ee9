"""Structured output for the llama.cpp engine: a JSON schema as llama.cpp's grammar, checked before
use, and applied to each token's logits by the engine itself.

Facts of llama-cpp-python 0.3.36 (and its llama.cpp) this relies on:
- Its JSON-schema converter (`LlamaGrammar.from_json_schema`) allows at most one space between
  tokens (`space ::= " "?`), so whitespace cannot run away (small models rather repeat array items
  or keys: see llama_cpp_generation's closing bonus). Its string rule admits raw control
  characters, which JSON forbids: that rule is replaced with llama.cpp's current one.
- The converter writes lengths and item counts out in full (minItems: 10**9 is a string of
  gigabytes): bounds past MAX_REPEAT are refused before it runs.
- llama.cpp's grammar parser returns NULL for a grammar it rejects, and recurses once per nested
  group: {"maxLength": 100000} (100,000 nested optional groups) overflows the stack and kills the
  process. Grammars nested deeper than it could ever accept (about 1,000) are refused unparsed.
  A NUL in a literal would cut the grammar short where llama.cpp reads it.
- With the grammar in llama-cpp-python's sampler chain, a grammar with no way on (an empty
  character class such as [z-a]) makes every token -inf; the chain then samples one anyway and
  llama.cpp's accept throws across the C API: the process aborts. So the grammar is not put in the
  chain: `GrammarMask` applies it in the engine's logits processor (the chain's first sampler),
  and where nothing may follow, says so instead of letting a token be drawn.
- Checking every token of the vocabulary against the grammar costs about 20 ms a step for
  SmolLM2's 49,152 tokens on one core (as much as the model's own step). The sampler keeps only
  tokens within a few logits of the best (min_p, greedy), so the check first runs on the best
  FIRST_LOOK tokens; when an allowed one there beats every token outside by more than that margin,
  the tokens outside could not have been drawn, and the answer is the one a full check gives.
"""

from __future__ import annotations

import ctypes
import json
import re
from typing import Any

import numpy as np

from vocabulary.errors import InvalidRequest

MAX_REPEAT = 1000  # the largest length or item count a schema may name
MAX_NESTING = 2000  # llama.cpp accepts about 1,000 and overflows its stack past 10,000
MAX_GRAMMAR_CHARS = 200_000
FIRST_LOOK = 512  # tokens checked first, by logit
_BOUNDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)
_TOKEN = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


def json_grammar(llama, schema: dict[str, Any]) -> str:
    """llama.cpp's grammar (GBNF) for a JSON schema; one that llama.cpp parses and that admits a
    first token. Anything else is the client's error (400, param response_format)."""
    from llama_cpp import LlamaGrammar

    _check_bounds(schema)
    try:
        text = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)._grammar
    except Exception as exc:  # the converter asserts on what it does not know
        raise _refused(f"is not supported: {_reason(exc)}") from exc
    text = _CHAR_RULE.sub(lambda _: _STRICT_CHAR, text)
    if "\x00" in text:
        raise _refused("holds a NUL character")
    if len(text) > MAX_GRAMMAR_CHARS or _nesting(text) > MAX_NESTING:
        raise _refused("is too large for llama.cpp's grammar (lengths or item counts in the thousands)")
    mask = GrammarMask(llama, text)
    try:
        if not mask.apply(np.zeros(llama.n_vocab(), dtype=np.single)):
            raise _refused("admits no JSON that can be written (an empty character class?)")
    finally:
        mask.close()
    return text


class GrammarMask:
    """One answer's grammar state in llama.cpp: which tokens may come next, and the tokens taken."""

    def __init__(self, llama, grammar: str) -> None:
        import llama_cpp

        self._sampler = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, grammar.encode("utf-8"), b"root")
        if not self._sampler:
            raise _refused("is too large or complex for llama.cpp's grammar")
        self._all = np.arange(llama.n_vocab(), dtype=np.intc)

    def apply(self, scores: np.ndarray, margin: float | None = None) -> bool:
        """Tokens the grammar does not allow next get -inf; False (scores untouched) when none is
        allowed. `margin`: how far below the best allowed token the sampler may still draw one
        (None: anywhere); with it, the best tokens are checked first."""
        if margin is not None and len(scores) > FIRST_LOOK:
            first = np.argpartition(-scores, FIRST_LOOK)[:FIRST_LOOK].astype(np.intc)
            logits = self._check(first, scores[first])
            allowed = np.isfinite(logits)
            if allowed.any() and logits[allowed].max() - margin > scores[first].min():
                scores[:] = -np.inf
                scores[first] = logits
                return True
        logits = self._check(self._all, scores)
        if not np.isfinite(logits).any():
            return False
        scores[:] = logits
        return True

    def _check(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The logits of `ids`, -inf where the grammar forbids the token."""
        import llama_cpp

        candidates = np.zeros(len(ids), dtype=_TOKEN)
        candidates["id"], candidates["logit"] = ids, logits
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(candidates), selected=-1,
            sorted=False)
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        return candidates["logit"]

    def accept(self, token: int) -> None:
        """A token `apply` allowed (any other aborts llama.cpp)."""
        import llama_cpp

        llama_cpp.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        import llama_cpp

        if self._sampler:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None


def _check_bounds(schema: Any) -> None:
    """Lengths, item counts and regex repetitions no larger than MAX_REPEAT, anywhere in the schema."""
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
        if not isinstance(node, dict):
            continue
        todo.extend(node.values())
        counts = [node.get(key) for key in _BOUNDS]
        if isinstance(node.get("pattern"), str):
            counts += [int(n) if len(n) < 7 else MAX_REPEAT + 1
                       for match in _QUANTIFIER.findall(node["pattern"]) for n in match if n]
        if any(isinstance(n, int) and n > MAX_REPEAT for n in counts):
            raise _refused(f"names a length or count over {MAX_REPEAT}, more than llama.cpp's grammar can hold")


def _nesting(grammar: str) -> int:
    """How deep the grammar's parentheses go, outside its literals and character classes."""
    depth = deepest = 0
    closing = None  # the quote or bracket that ends the literal or class we are in
    escaped = False
    for ch in grammar:
        if closing:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == closing:
                closing = None
        elif ch in "\"[":
            closing = "\"" if ch == "\"" else "]"
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def _refused(why: str) -> InvalidRequest:
    return InvalidRequest(f"response_format's JSON schema {why}", param="response_format")


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
