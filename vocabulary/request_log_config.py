"""Config of the request log: where the one line per request goes, how it rotates, what it keeps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vocabulary.config_base import StrictModel
from vocabulary.paths import PATH_RULE, ConfigPath


class RequestLogSpec(StrictModel):
    enabled: bool = Field(True, description="Write one JSON line per request (every endpoint, every outcome).")
    dir: ConfigPath = Field("logs/requests", description="Folder of the log files (one per ingress replica) and of "
                                                  "feedback.jsonl. " + PATH_RULE)
    max_bytes: int = Field(64 * 1024 * 1024, ge=4096, description="A log file is rotated past this size.")
    backups: int = Field(5, ge=0, le=100, description="Rotated files kept per replica (.1 newest).")
    excerpt_chars: int = Field(500, ge=0, le=4000, description="The user's text kept for training, redacted, "
                                                               "cut to this many characters.")
    redact: Literal["presidio", "off"] = Field(
        "presidio", description="Personal data (names, e-mails, phone and card numbers, addresses) and secrets "
                                "are replaced by their type before a line is written; 'off' keeps text as sent.")
    known_ids: int = Field(100_000, ge=0, description="Request ids this replica remembers for /api/feedback "
                                                      "without reading the log files.")
