"""OpenAI tool calling for engines with no tool parser of their own (llama.cpp, transformers), by
constrained decoding.

`tool_call_request` turns a call with tools into a json_schema call: the tools are described in the
system message, earlier tool calls and results are rendered as text the chat template knows, and
the answer must follow `vocabulary.tool_schema.answer_schema`. `ToolCallStream` turns the engine's
JSON text back into OpenAI's tool-call chunks as it streams, one character at a time.

A cut answer (the engine stops with "length", or for a stop string, inside the JSON) ends as OpenAI
ends one: with the engine's finish_reason and what was already sent. A tool call whose name was
complete has been announced and its arguments streamed as far as they came (not valid JSON then,
as with OpenAI); a call whose name was still incomplete is dropped.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import Any, AsyncIterator

from vocabulary.calls import ChatCall
from vocabulary.errors import ModelError
from vocabulary.tool_schema import answer_schema, arguments_schema, offered_functions

# --- the request -----------------------------------------------------------------------------------


def tool_call_request(call: ChatCall) -> ChatCall:
    """The call an engine with no native tools gets: tool history rendered as text and, when the
    model may call tools, the tools in the system message and a json_schema response_format.
    The client's own response_format, if any, shapes the {"content": ...} branch of "auto"."""
    messages = render_tool_history(call.messages)
    response_format = call.response_format
    content_schema = call.json_schema()
    schema = answer_schema(call.tools, call.tool_choice, call.parallel_tool_calls, content_schema=content_schema)
    if schema is not None:
        functions = offered_functions(call.tools, call.tool_choice)
        messages = _with_system_text(messages, _tools_prompt(functions, call.tool_choice, call.parallel_tool_calls,
                                                             json_content=content_schema is not None))
        response_format = {"type": "json_schema", "json_schema": {"name": "tool_calls", "schema": schema, "strict": True}}
    return replace(call, messages=messages, response_format=response_format,
                   tools=None, tool_choice=None, parallel_tool_calls=None)


def needs_tool_rewrite(call: ChatCall) -> bool:
    """Whether `tool_call_request` changes anything: tools given, or tool calls in the history."""
    return bool(call.tools) or any(m.get("role") == "tool" or m.get("tool_calls") for m in call.messages)


def render_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with tool calls and results as system/user/assistant text: an assistant's
    `tool_calls` become its wrapper JSON, and a run of `tool` results one user message."""
    names: dict[str, str] = {}  # tool_call_id -> function name, from the assistant messages before
    out: list[dict[str, Any]] = []
    results: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id") or ""
            name = names.get(call_id)
            results.append(f"Result of tool call {call_id}{f' ({name})' if name else ''}:\n{_text(message.get('content'))}")
            continue
        if results:
            out.append({"role": "user", "content": "\n\n".join(results)})
            results = []
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for tc in message["tool_calls"]:
                fn = tc.get("function") or {}
                names[tc.get("id") or ""] = fn.get("name") or ""
                calls.append({"name": fn.get("name"), "arguments": _arguments(fn.get("arguments"))})
            text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
            said = _text(message.get("content"))
            out.append({"role": "assistant", "content": f"{said}\n{text}" if said else text})
            continue
        out.append(message)
    if results:
        out.append({"role": "user", "content": "\n\n".join(results)})
    return out


def _arguments(text: Any) -> Any:
    """OpenAI carries arguments as JSON text; the wrapper as the JSON value (text that is not JSON
    stays a string)."""
    if not isinstance(text, str):
        return text if text is not None else {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _with_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`text` appended to the first system message, or a system message of its own first."""
    for i, message in enumerate(messages):
        if message.get("role") == "system":
            content = message.get("content")
            if isinstance(content, list):
                merged: Any = [*content, {"type": "text", "text": "\n\n" + text}]
            else:
                merged = f"{_text(content)}\n\n{text}" if _text(content) else text
            return [*messages[:i], {**message, "content": merged}, *messages[i + 1:]]
    return [{"role": "system", "content": text}, *messages]


def _tools_prompt(functions: list[dict[str, Any]], tool_choice: Any, parallel: bool | None, *,
                  json_content: bool) -> str:
    lines = ["You can call these tools:"]
    for fn in functions:
        lines.append(f"- {fn['name']}: {fn.get('description') or '(no description)'}")
        lines.append(f"  parameters (JSON schema): {json.dumps(arguments_schema(fn), ensure_ascii=False)}")
    first = functions[0]
    example = {"tool_calls": [{"name": first["name"], "arguments": _example_arguments(arguments_schema(first))}]}
    how_many = "exactly one call" if parallel is False else "one or more calls"
    lines += ["", "Answer with one JSON object and nothing else.",
              f'To call tools: {{"tool_calls": [{{"name": <tool name>, "arguments": <arguments object>}}]}} '
              f"with {how_many}.",
              f"Example: {json.dumps(example, ensure_ascii=False)}"]
    if tool_choice in (None, "auto"):
        answer = "<your answer as JSON>" if json_content else '"<your answer>"'
        lines.append(f'To answer without a tool: {{"content": {answer}}}')
    elif len(functions) == 1 and tool_choice != "required":
        lines.append(f"You must call {first['name']}.")
    else:
        lines.append("You must call a tool.")
    return "\n".join(lines)


_PLACEHOLDERS = {"string": "...", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}, "null": None}


def _example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Plausible arguments for the example: the required properties (or the first), a value by type."""
    props = schema.get("properties") or {}
    names = [n for n in schema.get("required") or () if n in props] or list(props)[:1]
    example = {}
    for name in names:
        prop = props[name] if isinstance(props[name], dict) else {}
        if "enum" in prop and prop["enum"]:
            example[name] = prop["enum"][0]
        elif "default" in prop:
            example[name] = prop["default"]
        else:
            kind = prop.get("type")
            example[name] = _PLACEHOLDERS.get(kind[0] if isinstance(kind, list) and kind else kind, "...")
    return example


# --- the answer ------------------------------------------------------------------------------------

_WS = " \t\n\r"
_SCALAR = set("-+.0123456789eEtrufalsn")
_OPEN = {"{": "key", "[": "value"}  # what an open container expects before its first item
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _Frame:
    """An open object or array: what it is for, and what may come next in it."""

    __slots__ = ("kind", "role", "expect", "key", "call")

    def __init__(self, kind: str, role: str | None, call: "_Call | None" = None) -> None:
        self.kind = kind  # "{" or "["
        self.role = role  # "root", "calls", "call", or None (inside a value we do not read)
        self.expect = "key" if kind == "{" else "value"  # key, colon, value, comma
        self.key: str | None = None
        self.call = call


class _Call:
    __slots__ = ("index", "id", "name", "announced", "pending", "has_arguments")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id = "call_" + secrets.token_hex(12)
        self.name: str | None = None
        self.announced = False
        self.pending: list[str] = []  # arguments text that came before the name
        self.has_arguments = False


class ToolCallStream:
    """Translates an engine's stream of the tool-call wrapper JSON into OpenAI's chunks.

    Feed it every engine chunk (`feed`), then call `end`; each returns the chunks to send. Tool
    calls come as OpenAI streams them: a first delta with id, type and name (as soon as the name is
    complete), then the raw text of the arguments value in fragments that concatenate to it, and
    finish_reason "tool_calls". The {"content": ...} branch streams its text as it decodes (or, with
    `json_content`, the raw JSON text of the value) with the engine's finish_reason. Output that
    breaks the wrapper's shape raises ModelError (the engine ignored its grammar).

    A char-level scanner: it keeps the open containers, the string being read and its escape, and
    the arguments being captured; it never re-parses what it has read."""

    def __init__(self, *, json_content: bool = False) -> None:
        self._json_content = json_content
        self._stack: list[_Frame] = []
        self._started = self._done = self._finished = self._role_sent = False
        self._branch: str | None = None  # "tool_calls" or "content"
        self._calls: list[_Call] = []
        # the string being read: its role, decoded text, escape state and a pending high surrogate
        self._in_string = False
        self._str_role: str | None = None  # "key", "name", "content" or None (not decoded)
        self._str: list[str] = []
        self._escape: str | None = None
        self._high: int | None = None
        self._in_scalar = False
        # the value being copied out raw (arguments, or JSON content): its depth and destination
        self._capture: _Call | str | None = None
        self._capture_depth = 0
        self._events: list[list[Any]] = []  # [kind, call or None, text pieces], in order
        self._envelope: dict[str, Any] = {}

    # feeding ------------------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks for one engine chunk (none, one, or several)."""
        self._envelope = {k: chunk.get(k) for k in ("id", "created", "model")}
        if self._finished:
            return [self._chunk(None, usage=chunk["usage"])] if chunk.get("usage") else []
        finish = None
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                for c in text:
                    self._char(c)
            finish = choice.get("finish_reason") or finish
        out = self._drain()
        if finish:
            out.append(self._finish(finish, chunk.get("usage")))
        elif chunk.get("usage"):
            out.append(self._chunk(None, usage=chunk["usage"]))
        return out

    def end(self) -> list[dict[str, Any]]:
        """The closing chunks if the engine's stream ended with no finish_reason."""
        if self._finished:
            return []
        out = self._drain()
        out.append(self._finish("stop" if self._done else "length", None))
        return out

    @property
    def complete(self) -> bool:
        """Whether the whole wrapper object has been read."""
        return self._done

    # the scanner --------------------------------------------------------------------------------

    def _char(self, c: str) -> None:
        if self._in_string:
            self._string_char(c)
            return
        if self._in_scalar:
            if c in _SCALAR:
                self._copy(c)
                return
            self._in_scalar = False
            self._value_ended()
        if c in _WS:
            if self._capture is not None:
                self._copy(c)
            return
        if self._done:
            raise ModelError("the model wrote past the end of its tool-call JSON")
        frame = self._stack[-1] if self._stack else None
        if c in "{[":
            role, call = self._value_begins(c)
            self._copy(c)
            self._stack.append(_Frame(c, role, call))
        elif c in "}]":
            if frame is None or frame.kind != "[{"[c == "}"] or frame.expect not in ("comma", _OPEN[frame.kind]):
                self._malformed(c)
            self._copy(c)
            self._stack.pop()
            if frame.role == "call":
                self._call_closed(frame.call)
            self._value_ended()
        elif c == '"':
            if frame is not None and frame.kind == "{" and frame.expect == "key":
                self._copy(c)
                self._open_string("key" if frame.role in ("root", "call") else None)
            else:
                role, _ = self._value_begins(c)
                self._copy(c)
                self._open_string(role)
        elif c == ":":
            if frame is None or frame.expect != "colon":
                self._malformed(c)
            self._copy(c)
            frame.expect = "value"
        elif c == ",":
            if frame is None or frame.expect != "comma":
                self._malformed(c)
            self._copy(c)
            frame.expect = "key" if frame.kind == "{" else "value"
        elif c in _SCALAR:
            self._value_begins(c)
            self._copy(c)
            self._in_scalar = True
        else:
            self._malformed(c)

    def _value_begins(self, c: str) -> tuple[str | None, _Call | None]:
        """A value starts with `c`: check it may, and say what it is for (and start a capture)."""
        if not self._stack:
            if self._started or c != "{":
                self._malformed(c)
            self._started = True
            return "root", None
        frame = self._stack[-1]
        if frame.expect != "value":
            self._malformed(c)
        if self._capture is not None:
            return None, None
        if frame.role == "root":
            self._branch = frame.key
            if frame.key == "tool_calls" and c == "[":
                return "calls", None
            if frame.key == "content":
                if self._json_content:
                    self._start_capture("content")
                    return None, None
                if c == '"':
                    return "content", None
            raise ModelError(f"the model answered with an unexpected {frame.key!r} in its tool-call JSON")
        if frame.role == "calls":
            if c != "{":
                self._malformed(c)
            call = _Call(len(self._calls))
            self._calls.append(call)
            return "call", call
        if frame.role == "call":
            if frame.key == "name" and c == '"':
                return "name", None
            if frame.key == "arguments":
                frame.call.has_arguments = True
                self._start_capture(frame.call)
        return None, None

    def _start_capture(self, target: _Call | str) -> None:
        self._capture, self._capture_depth = target, len(self._stack)

    def _value_ended(self) -> None:
        if not self._stack:
            self._done = True
            return
        if self._capture is not None and len(self._stack) == self._capture_depth:
            self._capture = None
        self._stack[-1].expect = "comma"

    def _open_string(self, role: str | None) -> None:
        self._in_string, self._str_role, self._str, self._escape, self._high = True, role, [], None, None

    def _string_char(self, c: str) -> None:
        if self._escape is None:
            if c == "\\":
                self._copy(c)
                self._escape = ""
            elif c == '"':
                self._copy(c)
                self._string_closed()
            else:
                # a raw control character (llama.cpp's grammar lets one through) is escaped in copies
                self._copy(c if c >= " " else json.dumps(c)[1:-1])
                self._decoded(c)
            return
        self._copy(c)
        if self._escape == "":
            if c == "u":
                self._escape = "u"
                return
            if c not in _ESCAPES:
                self._malformed(c)
            self._escape = None
            self._decoded(_ESCAPES[c])
            return
        self._escape += c
        if len(self._escape) == 5:
            try:
                code = int(self._escape[1:], 16)
            except ValueError:
                self._malformed(self._escape)
            self._escape = None
            self._code_point(code)

    def _code_point(self, code: int) -> None:
        if 0xD800 <= code < 0xDC00:  # a high surrogate: wait for its low half
            self._decoded("")
            self._high = code
        elif 0xDC00 <= code < 0xE000 and self._high is not None:
            high, self._high = self._high, None
            self._decoded(chr(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00)))
        else:
            self._decoded(chr(code) if not 0xDC00 <= code < 0xE000 else "\ufffd")

    def _decoded(self, text: str) -> None:
        if self._str_role is None:
            return
        if self._high is not None:  # a high surrogate with no low half after it
            self._high = None
            text = "\ufffd" + text
        if self._str_role == "content":
            self._event("content", None, text)
        else:
            self._str.append(text)

    def _string_closed(self) -> None:
        self._decoded("")
        self._in_string = False
        frame = self._stack[-1]
        text = "".join(self._str)
        if self._str_role == "key" or (frame.kind == "{" and frame.expect == "key"):
            frame.key, frame.expect = text, "colon"
            return
        if self._str_role == "name":
            call = frame.call
            call.name, call.announced = text, True
            self._event("header", call, "")
            if call.pending:
                self._event("arguments", call, "".join(call.pending))
                call.pending = []
        self._value_ended()

    def _call_closed(self, call: _Call) -> None:
        if call.name is None:
            raise ModelError("the model wrote a tool call without a name")
        if not call.has_arguments:
            self._event("arguments", call, "{}")

    def _copy(self, c: str) -> None:
        target = self._capture
        if target is None:
            return
        if target == "content":
            self._event("content", None, c)
        elif target.announced:
            self._event("arguments", target, c)
        else:
            target.pending.append(c)

    def _malformed(self, text: str) -> None:
        raise ModelError(f"the model's tool-call JSON is malformed at {text!r}")

    # output -------------------------------------------------------------------------------------

    def _event(self, kind: str, call: _Call | None, text: str) -> None:
        last = self._events[-1] if self._events else None
        if last is not None and last[0] == kind and last[1] is call and kind != "header":
            last[2].append(text)
        else:
            self._events.append([kind, call, [text]])

    def _drain(self) -> list[dict[str, Any]]:
        out = []
        for kind, call, pieces in self._events:
            text = "".join(pieces)
            if kind == "content":
                if text:
                    out.append(self._chunk({"content": text}))
            elif kind == "header":
                out.append(self._chunk({"tool_calls": [{"index": call.index, "id": call.id, "type": "function",
                                                        "function": {"name": call.name, "arguments": ""}}]}))
            elif text:
                out.append(self._chunk({"tool_calls": [{"index": call.index, "function": {"arguments": text}}]}))
        self._events = []
        return out

    def _finish(self, engine_reason: str, usage: dict[str, Any] | None) -> dict[str, Any]:
        self._finished = True
        reason = "tool_calls" if self._done and self._branch == "tool_calls" else engine_reason
        return self._chunk({}, finish_reason=reason, usage=usage)

    def _chunk(self, delta: dict[str, Any] | None, *, finish_reason: str | None = None,
               usage: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self._envelope.get("id"), "object": "chat.completion.chunk",
                               "created": self._envelope.get("created"), "model": self._envelope.get("model")}
        if delta is not None:
            if not self._role_sent:
                delta = {"role": "assistant", **delta}
                self._role_sent = True
            out["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        else:
            out["choices"] = []
        if usage:
            out["usage"] = usage
        return out


async def stream_tool_calls(chunks: AsyncIterator[dict[str, Any]], *,
                            json_content: bool = False) -> AsyncIterator[dict[str, Any]]:
    """An engine's chunks for a `tool_call_request` call, as OpenAI's tool-call chunks."""
    translator = ToolCallStream(json_content=json_content)
    async for chunk in chunks:
        for out in translator.feed(chunk):
            yield out
    for out in translator.end():
        yield out
