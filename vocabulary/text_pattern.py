"""A regular expression that an operator gives (a fault's `when.text_regex`), checked when the
config or the admin request is read and matched safely on the serving path: the pattern is short
and its counted repeats small (so compiling it is quick), the text it reads is capped, and with the
`regex` package (installed with transformers) a match that backtracks too long is cut off and
counts as no match. A pattern's answer for a text is kept for the few calls of one request."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")

MAX_PATTERN_CHARS = 500
MAX_REPEAT = 100  # a{1000} compiles slowly (nested, seconds)
MAX_TEXT_CHARS = 4000  # only the start of a longer text is read
MATCH_TIMEOUT_S = 0.01
_COUNTED = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")

try:  # the `regex` package can cut off a match after a timeout; `re` cannot
    import regex as _engine
except ImportError:  # pragma: no cover - transformers requires it
    _engine = None


@functools.lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern; ValueError naming the problem if it is too long, repeats too much or
    is not a valid regular expression."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"the pattern has {len(pattern)} characters, over the limit of {MAX_PATTERN_CHARS}")
    for match in _COUNTED.finditer(pattern):
        if any(n and int(n) > MAX_REPEAT for n in match.groups()):
            raise ValueError(f"a counted repeat over {MAX_REPEAT} ({match.group(0)}): use + or *")
    engine = _engine or re
    try:
        return engine.compile(pattern)
    except (engine.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


def found(pattern: str, text: str) -> bool:
    """Whether `pattern` (valid: see compile_pattern) occurs in the first MAX_TEXT_CHARS characters
    of `text`; a match that runs past MATCH_TIMEOUT_S counts as none (and is logged)."""
    return _found(pattern, text[:MAX_TEXT_CHARS])


@functools.lru_cache(maxsize=256)
def _found(pattern: str, text: str) -> bool:
    return search(compile_pattern(pattern), text)


def search(compiled: Any, text: str) -> bool:
    text = text[:MAX_TEXT_CHARS]
    if _engine is None:
        return compiled.search(text) is not None
    try:
        return compiled.search(text, timeout=MATCH_TIMEOUT_S) is not None
    except TimeoutError:
        logger.warning("regex match timed out; counted as no match",
                       extra={"pattern": compiled.pattern[:100], "text_chars": len(text)})
        return False
