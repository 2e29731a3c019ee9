"""Per-family output validators: an answer a client cannot use counts as the model's failure
(zero-length audio, an output that is not the expected object). A legitimate empty result is not a
failure: silence transcribes to "" (as OpenAI answers `{"text": ""}`), an image may hold no text,
an LLM may stop at once."""

from __future__ import annotations

from typing import Any, Callable


class InvalidOutput(Exception):
    def __init__(self, model: str, why: str) -> None:
        super().__init__(f"unusable output: {why}")
        self.model = model
        self.message = str(self)


class UnfitOutput(InvalidOutput):
    """A constrained answer that does not follow the client's schema: the engine could not enforce
    some keyword (llama.cpp's grammar ignores `not`, `multipleOf`, ...). The next model tries; no
    breaker counts it, since the client's schema decides it."""


class EmptyReading(InvalidOutput):
    """An engine read nothing where another engine of the chain may read text: the chain moves on,
    and the model is not blamed (an image may really be blank)."""


def _llm(out: Any) -> str | None:
    # An empty answer can be legitimate (a stop sequence, max_tokens=1), so only the shape is checked.
    if not isinstance(out, dict) or not out.get("choices") or not isinstance(out["choices"][0], dict):
        return "not a chat completion"
    message = out["choices"][0].get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content") or "", str):
        return "not a chat completion"
    return None


def _stt(out: Any) -> str | None:
    # An empty transcript is what silence, a pure tone or noise is: a valid answer, not a failure.
    if not isinstance(out, dict) or not isinstance(out.get("text"), str):
        return "not a transcription"
    if not isinstance(out.get("segments", []), list):
        return "not a transcription"
    return None


def _tts(out: Any) -> str | None:
    if not isinstance(out, dict) or not isinstance(out.get("audio"), (bytes, bytearray)):
        return "not audio"
    return None if len(out["audio"]) > 0 else "zero-length audio"


def _vision(out: Any) -> str | None:
    if not isinstance(out, dict) or not isinstance(out.get("text"), str) or not isinstance(out.get("lines"), list):
        return "not an OCR result"
    return None


def _search(out: Any) -> str | None:
    if not isinstance(out, dict) or not isinstance(out.get("results"), list):
        return "not search results"
    if any(not isinstance(r, dict) or not {"title", "url", "snippet"} <= set(r) for r in out["results"]):
        return "malformed search result"
    return None


CHECKS: dict[str, Callable[[Any], str | None]] = {"llm": _llm, "stt": _stt, "tts": _tts, "clone": _tts,
                                                   "vision": _vision, "search": _search}


def validate(family: str, model: str, output: Any) -> Any:
    check = CHECKS.get(family)
    why = check(output) if check else None
    if why:
        raise InvalidOutput(model, why)
    return output


def structured(model: str, output: dict[str, Any], schema: dict[str, Any] | None,
               tools: list[dict[str, Any]] | None, stop: list[str] | None = None) -> dict[str, Any]:
    """A whole chat answer that must follow a JSON schema (response_format) or call tools with
    arguments that fit their schemas: one that does not is unfit, and the next model of the chain
    tries. An answer cut by length, or one that may have ended on the client's own stop string, is
    returned as it is: the client asked for that. Runs off the event loop (schemas can be large)."""
    choice = output["choices"][0]
    if choice.get("finish_reason") == "length" or (stop and choice.get("finish_reason") == "stop"):
        return output
    message = choice.get("message") or {}
    if tools and message.get("tool_calls"):
        params = {t["function"]["name"]: t["function"].get("parameters") or {"type": "object"} for t in tools}
        for call in message["tool_calls"]:
            name = call["function"]["name"]
            if name not in params:
                raise InvalidOutput(model, f"called a tool that was not offered: {name!r}")
            _fits(model, call["function"]["arguments"], params[name], f"arguments of {name}")
    elif schema is not None and not tools:
        _fits(model, message.get("content") or "", schema, "content")
    return output


def _fits(model: str, text: str, schema: dict[str, Any], what: str) -> None:
    import json

    import jsonschema
    import referencing

    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise UnfitOutput(model, f"{what} is not JSON") from None
    # An empty registry: a $ref that is not local is never fetched (no request leaves from here).
    validator = jsonschema.Draft202012Validator(schema, registry=referencing.Registry())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except Exception:  # a reference that cannot be resolved, a schema the validator cannot read
        return  # the engine accepted the schema and constrained the answer to it: not the model's fault
    if error is not None:
        raise UnfitOutput(model, f"{what} does not follow the schema: {error.message[:200]}")


def corrupt(family: str, output: Any, how: str) -> Any:
    """What a broken model might send: `empty` (the right shape, nothing in it) or `garbled`."""
    if how == "garbled":
        return "\x00\x1b garbled \ufffd output"  # not the object the family answers with
    if not isinstance(output, dict):
        return output
    out = dict(output)
    if family == "llm" and out.get("choices"):
        out["choices"] = [{**out["choices"][0], "message": {**out["choices"][0]["message"], "content": ""}}]
    elif family in ("stt", "vision"):
        out["text"] = ""
    elif family in ("tts", "clone"):
        out["audio"] = b""
    elif family == "search":
        out["results"] = []
    return out
