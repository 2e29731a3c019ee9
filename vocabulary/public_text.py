"""What a client may read of a server-side failure: the message without the internal addresses in it.

An upstream model's base URL, a replica's host and port, a model file's path: they help an operator
and a prober alike. `scrub(text)` replaces URLs, IP addresses (with their ports), `localhost:PORT`
and absolute paths of two or more parts with placeholders. Server-side error bodies (5xx), the
`switchboard.failed` list of a degraded answer and the public /api/health carry scrubbed text or a
reason class; the request log and the admin endpoints keep the detail."""

from __future__ import annotations

import re

_HEX = r"[0-9A-Fa-f]{1,4}"
_PATTERNS = (
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+"), "<internal url>"),
    (re.compile(r"\[[0-9A-Fa-f:.%]+\](?::\d+)?"), "<internal address>"),
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])"), "<internal address>"),
    # IPv6: all eight groups, or compressed with "::" and a digit somewhere ("12:30:45" is a time)
    (re.compile(rf"(?<![\w:])(?:(?:{_HEX}:){{7}}{_HEX}|(?=[0-9A-Fa-f:]*[0-9A-Fa-f])(?:{_HEX}:)*(?:{_HEX})?::"
                rf"(?:{_HEX}:)*(?:{_HEX})?)(?![\w:])"), "<internal address>"),
    (re.compile(r"(?i)\blocalhost(?::\d+)?\b"), "<internal address>"),
    (re.compile(r"(?<![\w<>.])/(?:[\w.@+~-]+/)+[\w.@+~-]*"), "<path>"),
)


def scrub(text: str) -> str:
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text
