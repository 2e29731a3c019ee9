"""Make a rejected request's payload fit in a log line without losing what was wrong with it."""

from __future__ import annotations

import json
import re
from typing import Any

_LONG = 200
_B64ISH = re.compile(r"^(data:[^,]{0,100},)?[A-Za-z0-9+/=\s_-]+$")


def shorten(value: Any) -> Any:
    """Long strings (base64 audio and images above all) are cut, noting their full length. The
    result is always JSON-serialisable: a log line must never fail to be written."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if hasattr(value, "multi_items"):  # form data: fields, and files described, not dumped
        return {k: _describe_upload(v) for k, v in value.multi_items()}
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        if len(value) > _LONG:
            kind = "base64" if _B64ISH.match(value[:4096]) else "text"
            return f"{value[:64]}...<{kind}, {len(value)} chars>"
        return value
    if isinstance(value, dict):
        return {str(k): shorten(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shorten(v) for v in value]
    return shorten(repr(value))


def _describe_upload(value: Any) -> Any:
    if hasattr(value, "filename") and hasattr(value, "size"):
        return f"<file {value.filename!r}, {value.size} bytes>"
    return shorten(value)


def loggable_body(raw: bytes | str | Any, limit: int = 8192) -> Any:
    """The request body as logged: parsed JSON with long strings shortened, else cut text."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    if isinstance(raw, str):
        try:
            return shorten(json.loads(raw))
        except ValueError:
            return raw if len(raw) <= limit else f"{raw[:limit]}...<{len(raw)} chars>"
    return shorten(raw)
