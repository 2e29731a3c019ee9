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
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(value: Any) -> Any:
    """The cleaned string; anything that is not a string passes on to the field's own type check."""
    if not isinstance(value, str):
        return value
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise PydanticCustomError(
            INVALID_UNICODE,
            "contains invalid Unicode (a lone surrogate, U+{code}, at character {position}); send UTF-8 text",
            {"code": f"{ord(bad.group()):04X}", "position": bad.start()})
    return _CONTROL.sub("", value)


Text = Annotated[str, BeforeValidator(clean_text)]
"""A string a client sent: valid Unicode, control characters (but \\t \\n \\r) stripped."""
