"""Intents, routes and families, and how they map onto each other: the one copy.

- an *intent* is what the switchboard decides a chat request needs (vision | voice | text | search);
- a *route* is a failover chain in config (text, vision, stt, tts, search, clone);
- a *family* is what a model is (llm, vision, stt, tts, clone, search; router for the classifier).
"""

from __future__ import annotations

from typing import Literal

INTENTS: tuple[str, ...] = ("vision", "voice", "text", "search")
Route = Literal["text", "vision", "stt", "tts", "search", "clone"]

ROUTE_FAMILY: dict[str, str] = {"text": "llm", "vision": "vision", "stt": "stt", "tts": "tts",
                                "search": "search", "clone": "clone"}
FAMILY_ROUTE: dict[str, str] = {family: route for route, family in ROUTE_FAMILY.items()}
# The intent a request naming a model of this family has.
FAMILY_INTENT: dict[str, str] = {"llm": "text", "vision": "vision", "stt": "voice", "tts": "voice",
                                 "clone": "voice", "search": "search"}

LLM_ONLY = "llm_only"
# Routes whose chain ends, by default, in the LLM-only path: the LLM answers and says what could
# not be done. (text is the LLM; clone falls back to the plain voice.)
LLM_ONLY_ROUTES: tuple[str, ...] = ("vision", "stt", "tts", "search")

# OpenAI's model names, mapped to the family whose first model of the route answers them.
OPENAI_MODEL_FAMILIES: dict[str, str] = {
    "whisper-1": "stt", "gpt-4o-transcribe": "stt", "gpt-4o-mini-transcribe": "stt",
    "tts-1": "tts", "tts-1-hd": "tts", "gpt-4o-mini-tts": "tts",
}
OPENAI_VOICES: tuple[str, ...] = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                                  "shimmer", "verse", "marin", "cedar")
