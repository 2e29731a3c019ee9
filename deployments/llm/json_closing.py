"""Helping a small model close its JSON in time, shared by both in-process engines.

Under a schema, small models repeat array items and keys until any limit. Past CLOSING_FROM of the
answer's token limit, the tokens that close what is open get a logit bonus that grows to
CLOSING_BONUS at CLOSING_FULL of it; the grammar still decides what is valid. Inside a JSON string
only a closing quote closes (a bracket there is text), so the open string is tracked."""

from __future__ import annotations

CLOSING_FROM, CLOSING_FULL, CLOSING_BONUS = 0.4, 0.7, 15.0  # shares of the limit; logit bonus at full


def closing_bonus(produced: int, limit: int) -> float:
    """What closing tokens get added to their logits after `produced` of `limit` tokens."""
    share = produced / max(limit, 1)
    if share < CLOSING_FROM:
        return 0.0
    return CLOSING_BONUS * min(1.0, (share - CLOSING_FROM) / (CLOSING_FULL - CLOSING_FROM))


class OpenString:
    """Whether a JSON string is open, read from the bytes of the tokens taken."""

    def __init__(self) -> None:
        self.open = False
        self._escaped = False

    def read(self, piece: bytes) -> None:
        for byte in piece:  # quotes and backslashes are ASCII: never inside a UTF-8 sequence
            if self._escaped:
                self._escaped = False
            elif self.open and byte == 0x5C:  # backslash
                self._escaped = True
            elif byte == 0x22:  # quote
                self.open = not self.open
