"""Text a client sends, made safe before any model sees it.

Every string field of a request schema (and every text Form parameter) is `Text`: invalid
Unicode (a lone surrogate such as the JSON escape "\\ud800", which no model can encode) is refused
with a 400 naming the field, and control characters other than tab, newline and carriage return
(NUL, ESC, DEL, the C1 range) are stripped: they mean nothing to a model and break some engines
(a NUL in TTS input failed Piper). Cleaning runs before the field's own constraints, so text that
is empty once cleaned still fails `min_length`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

INVALID_UNICODE = "invalid_unicode"  # the pydantic error type, preferred by serve_app/http_errors.py
# C0 controls but tab, newline and carriage return, and DEL: as bytes they never occur inside a
# multi-byte UTF-8 sequence, so they can be deleted from the encoded text directly (fast on the
# megabytes of a base64 field, which is why this is not a regular expression over the string).
_C0_AND_DEL = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_C1 = re.compile("[\x80-\x9f]")


def clean_text(value: Any) -> Any:
    """The cleaned string; anything that is not a string passes on to the field's own type check."""
    if not isinstance(value, str):
        return value
    ascii_only = value.isascii()
    try:
        encoded = value.encode("ascii" if ascii_only else "utf-8")
    except UnicodeEncodeError as exc:  # only a surrogate cannot be encoded in UTF-8
        raise PydanticCustomError(
            INVALID_UNICODE,
            "contains invalid Unicode (a lone surrogate, U+{code}, at character {position}); send UTF-8 text",
            {"code": f"{ord(value[exc.start]):04X}", "position": exc.start}) from None
    kept = encoded.translate(None, _C0_AND_DEL)
    if len(kept) != len(encoded):
        value = kept.decode("ascii" if ascii_only else "utf-8")
    return value if ascii_only else _C1.sub("", value)


Text = Annotated[str, BeforeValidator(clean_text)]
"""A string a client sent: valid Unicode, control characters (but \\t \\n \\r) stripped."""


MAX_JSON_DEPTH = 64


def clean_json(value: Any, depth: int = 0) -> Any:
    """Every string of a JSON value (keys too) cleaned as `Text` is: a tool's description or a JSON
    schema reaches the model's prompt or grammar, where a lone surrogate would break the engine.
    Nesting deeper than MAX_JSON_DEPTH is refused (no schema needs it; recursion would)."""
    if depth > MAX_JSON_DEPTH:
        raise PydanticCustomError("too_deep", "nests deeper than {limit} levels", {"limit": MAX_JSON_DEPTH})
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, depth + 1) for v in value]
    return value


JSONObject = Annotated[dict[str, Any], BeforeValidator(clean_json)]
"""A JSON object a client sent (a tool, a schema, metadata), every string in it cleaned."""
