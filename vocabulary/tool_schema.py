"""OpenAI tools, checked as OpenAI checks them, and the JSON schema that makes an engine with no tool
parser of its own answer in a fixed wrapper (constrained decoding):

    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, ...]}
    {"content": "a plain answer"}                 (only with tool_choice "auto")

Pure: the ingress checks requests with it, the LLM deployment builds engine calls with it
(deployments/llm/tool_calls.py)."""

from __future__ import annotations

import copy
import re
from typing import Any

from vocabulary.errors import InvalidRequest

MAX_TOOLS = 128  # OpenAI's limit
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CHOICES = ("none", "auto", "required")


def check_tools(tools: Any, tool_choice: Any, parallel_tool_calls: Any) -> None:
    """Refuse (InvalidRequest, with the offending parameter) what OpenAI would refuse. An empty
    `tools` list counts as no tools (the ingress passes `body.tools or []`; OpenAI itself refuses [])."""
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array of tools", param="tools")
        if len(tools) > MAX_TOOLS:
            raise InvalidRequest(f"'tools' has {len(tools)} tools; at most {MAX_TOOLS} are allowed", param="tools")
        seen: set[str] = set()
        for i, tool in enumerate(tools):
            name = _check_tool(tool, f"tools[{i}]")
            if name in seen:
                raise InvalidRequest(f"duplicate function name {name!r} in 'tools'", param=f"tools[{i}].function.name")
            seen.add(name)
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise InvalidRequest("'parallel_tool_calls' must be a boolean", param="parallel_tool_calls")
    if tool_choice is None:
        return
    if isinstance(tool_choice, str):
        if tool_choice not in _CHOICES:
            raise InvalidRequest(f"invalid 'tool_choice' {tool_choice!r}: expected one of 'none', 'auto', 'required' "
                                 "or a named function", param="tool_choice")
        if tool_choice == "required" and not tools:
            raise InvalidRequest("'tool_choice' 'required' needs 'tools'", param="tool_choice")
        return
    name = chosen_function(tool_choice)
    if name is None:
        raise InvalidRequest("'tool_choice' must be 'none', 'auto', 'required' or "
                             '{"type": "function", "function": {"name": ...}}', param="tool_choice")
    if not tools:
        raise InvalidRequest(f"'tool_choice' names function {name!r} but no 'tools' are given", param="tool_choice")
    if name not in {t["function"]["name"] for t in tools}:
        raise InvalidRequest(f"'tool_choice' names function {name!r}, which is not in 'tools'", param="tool_choice")


def _check_tool(tool: Any, where: str) -> str:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise InvalidRequest(f"{where}: only tools of type 'function' are supported", param=f"{where}.type")
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise InvalidRequest(f"{where}: 'function' must be an object", param=f"{where}.function")
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"{where}: function name must be 1 to 64 letters, digits, '_' or '-'",
                             param=f"{where}.function.name")
    if fn.get("description") is not None and not isinstance(fn["description"], str):
        raise InvalidRequest(f"{where}: 'description' must be a string", param=f"{where}.function.description")
    params = fn.get("parameters")
    if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
        raise InvalidRequest(f"invalid schema for function {name!r}: 'parameters' must be a JSON schema of "
                             "type 'object'", param=f"{where}.function.parameters")
    return name


def chosen_function(tool_choice: Any) -> str | None:
    """The function a named tool_choice ({"type": "function", "function": {"name": ...}}) names."""
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return name
    return None


def offered_functions(tools: list[dict[str, Any]] | None, tool_choice: Any) -> list[dict[str, Any]]:
    """The `function` objects the model may call: none for "none", the named one, else all."""
    if not tools or tool_choice == "none":
        return []
    named = chosen_function(tool_choice)
    return [t["function"] for t in tools if named is None or t["function"]["name"] == named]


def arguments_schema(fn: dict[str, Any]) -> dict[str, Any]:
    """A function's parameters as an object schema ({"type": "object", "properties": {}} if none)."""
    params = fn.get("parameters") or {"properties": {}}
    return {"type": "object", **params}


def answer_schema(tools: list[dict[str, Any]] | None, tool_choice: Any, parallel_tool_calls: bool | None,
                  *, content_schema: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The schema the model's whole answer must follow; None when it answers in plain text (no tools,
    or tool_choice "none"). With tool_choice "auto" (the default) the answer may instead be
    {"content": ...}: a string, or a value of `content_schema` when the client also asked for a
    response_format. Properties keep their order: engines emit them in schema order."""
    functions = offered_functions(tools, tool_choice)
    if not functions:
        return None
    defs: dict[str, Any] = {}
    calls = [_call_schema(fn, defs) for fn in functions]
    array: dict[str, Any] = {"type": "array", "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
                             "minItems": 1}
    if parallel_tool_calls is False:
        array["maxItems"] = 1
    schema: dict[str, Any] = _closed_object({"tool_calls": array})
    if tool_choice in (None, "auto"):
        content = _hoisted("content", content_schema, defs) if content_schema else {"type": "string"}
        schema = {"anyOf": [schema, _closed_object({"content": content})]}
    if defs:
        schema["$defs"] = defs
    return schema


def _closed_object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _call_schema(fn: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    return _closed_object({"name": {"type": "string", "const": fn["name"]},
                           "arguments": _hoisted(fn["name"], arguments_schema(fn), defs)})


def _hoisted(fname: str, params: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`params` with its own definitions moved to the answer's root `$defs` (under names that start
    with the function's) and its local `$ref`s pointed there: refs are resolved from the root."""
    if not _has_refs(params):
        return params
    params = copy.deepcopy(params)
    own = {**params.pop("definitions", {}), **params.pop("$defs", {})}
    renamed = {}
    for name, schema in own.items():
        renamed[name] = _unique(f"{fname}__{re.sub(r'[^A-Za-z0-9_-]', '_', name)}", defs)
        defs[renamed[name]] = schema
    root: list[str] = []  # the parameters' own name in `$defs`, once a ref points into them

    def point(ref: str) -> str:
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                name, _, rest = ref[len(prefix):].partition("/")
                if name in renamed:
                    return f"#/$defs/{renamed[name]}" + (f"/{rest}" if rest else "")
        if ref == "#" or ref.startswith("#/"):
            if not root:
                root.append(_unique(fname, defs))
                defs[root[0]] = params
            return f"#/$defs/{root[0]}{ref[1:]}"
        return ref

    seen: set[int] = set()  # a sub-schema shared by identity is rewritten once

    def visit(node: Any) -> None:
        if not isinstance(node, (dict, list)) or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                node["$ref"] = point(node["$ref"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(params)
    for name in own:
        visit(defs[renamed[name]])
    return params


def _has_refs(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or "$defs" in node or "definitions" in node or any(map(_has_refs, node.values()))
    if isinstance(node, list):
        return any(map(_has_refs, node))
    return False


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate
