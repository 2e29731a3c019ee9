"""A client's bad text is the client's 400, never a model's failure: invalid Unicode is refused
naming the field, control characters are stripped, and every text field of every request schema
(and every text Form parameter of the ingress) goes through the one cleaning type."""

from __future__ import annotations

import ast
import json
import typing
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.testclient import TestClient
from pydantic import BaseModel, BeforeValidator, ValidationError

from serve_app import http_errors
from serve_app.middleware import RequestIdMiddleware
from serve_app.schemas import audio as audio_schemas
from serve_app.schemas import chat as chat_schemas
from serve_app.schemas.audio import CommitteeRequest, SearchRequest, SpeechRequest, TTSRequest
from serve_app.schemas.chat import ChatCompletionRequest
from serve_app.schemas.text import Text, clean_json, clean_text

ROOT = Path(__file__).resolve().parents[2]
SURROGATE = "bad \ud800 x"


# ---- the type ------------------------------------------------------------------------------

def test_control_characters_are_stripped_but_tab_newline_and_return_kept():
    assert clean_text("a\x00b\x1b[31mc\x7fd\x85e\x9f") == "ab[31mcde"
    assert clean_text("line 1\nline\t2\r\n") == "line 1\nline\t2\r\n"
    assert clean_text("Grüße, 日本語, emoji 🎉, \u200b zero width") == "Grüße, 日本語, emoji 🎉, \u200b zero width"


@pytest.mark.parametrize("bad", ["\ud800", "x\udfff", "\udc00\ud800", "ok " + "\ud83d"])
def test_lone_surrogates_are_refused(bad):
    with pytest.raises(ValueError, match="invalid Unicode"):
        clean_text(bad)


def test_a_proper_surrogate_pair_from_json_is_a_real_character():
    assert clean_text(json.loads('"\\ud83c\\udf89"')) == "🎉"


def test_not_a_string_is_left_to_the_field_type():
    assert clean_text(5) == 5 and clean_text(None) is None


def test_cleaning_runs_before_length_checks():
    with pytest.raises(ValidationError, match="at least 1 character"):
        SpeechRequest.model_validate({"input": "\x00\x00"})
    with pytest.raises(ValidationError, match="must not be empty"):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "stop": "\x00"})


# ---- every text field of every request uses it ---------------------------------------------

def _is_clean(meta) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func in (clean_text, clean_json) for m in meta)


def _bare_strings(tp, where: str, seen: set) -> list[str]:
    """Places under type `tp` where a plain `str` (not `Text`) is accepted."""
    if tp is str:
        return [where]
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner, *meta = typing.get_args(tp)
        if _is_clean(meta) and (inner is str or any(m.func is clean_json for m in meta
                                                     if isinstance(m, BeforeValidator))):
            return []
        return _bare_strings(inner, where, seen)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return []
        seen.add(tp)
        found = []
        for name, field in tp.model_fields.items():
            if field.annotation is str:
                if not _is_clean(field.metadata):
                    found.append(f"{tp.__name__}.{name}")
            else:
                found += _bare_strings(field.annotation, f"{tp.__name__}.{name}", seen)
        return found
    return [p for arg in typing.get_args(tp) for p in _bare_strings(arg, where, seen)]


def request_models() -> list[type[BaseModel]]:
    return [cls for module in (chat_schemas, audio_schemas) for name, cls in vars(module).items()
            if name.endswith("Request") and isinstance(cls, type) and issubclass(cls, BaseModel)
            and cls.__module__ == module.__name__]


def test_every_text_field_of_every_request_schema_is_cleaned():
    models = request_models()
    assert {m.__name__ for m in models} >= {"ChatCompletionRequest", "SpeechRequest", "TTSRequest",
                                           "SearchRequest", "CommitteeRequest"}
    bare = [place for model in models for place in _bare_strings(model, model.__name__, set())]
    assert not bare, f"use serve_app.schemas.text.Text for: {bare}"


def test_the_coverage_check_sees_a_plain_str():
    class Sneaky(BaseModel):
        inner: list[int] | None = None
        keys: dict[str, int] = {}
        note: str | None = None

    assert _bare_strings(Sneaky, "Sneaky", set()) == ["Sneaky.keys", "Sneaky.note"]


def test_every_text_form_parameter_of_the_ingress_is_cleaned():
    """serve_app/ingress.py, read as source (no Ray): no Form(...) parameter takes a plain str."""
    tree = ast.parse((ROOT / "serve_app" / "ingress.py").read_text())
    forms, bare = [], []
    for node in ast.walk(tree):
        annotation = getattr(node, "annotation", None) if isinstance(node, ast.arg) else None
        if not (isinstance(annotation, ast.Subscript) and isinstance(annotation.slice, ast.Tuple)):
            continue
        kind, *extras = annotation.slice.elts
        if any(isinstance(e, ast.Call) and getattr(e.func, "id", None) == "Form" for e in extras):
            forms.append(node.arg)
            if any(isinstance(n, ast.Name) and n.id == "str" for n in ast.walk(kind)):
                bare.append(node.arg)
    assert {"prompt", "language", "text", "reference_text", "image_url", "model"} <= set(forms)
    assert not bare, f"use Text, not str, for the Form parameters: {bare}"


def test_strings_inside_tools_and_schemas_are_cleaned():
    surrogate = json.loads('"\\ud800"')
    tool = {"type": "function", "function": {"name": "f", "description": surrogate, "parameters": {"type": "object"}}}
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "tools": [tool]})
    clean = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "n", "schema": {"description": "a\x00b", "x\x1b": [1, "c\x7f"]}}}})
    assert clean.response_format.json_schema.schema_ == {"description": "ab", "x": [1, "c"]}


@pytest.mark.parametrize("model, body, param", [
    (ChatCompletionRequest, {"messages": [{"role": "user", "content": SURROGATE}]}, "content"),
    (ChatCompletionRequest, {"messages": [{"role": "user", "content": "x", "name": SURROGATE}]}, "name"),
    (ChatCompletionRequest, {"model": SURROGATE, "messages": [{"role": "user", "content": "x"}]}, "model"),
    (ChatCompletionRequest, {"messages": [{"role": "user", "content": "x"}], "stop": [SURROGATE]}, "stop"),
    (ChatCompletionRequest, {"messages": [{"role": "user", "content": "x"}], "audio": {"voice": SURROGATE}},
     "voice"),
    (SpeechRequest, {"input": SURROGATE}, "input"),
    (SpeechRequest, {"input": "x", "voice": SURROGATE}, "voice"),
    (TTSRequest, {"text": SURROGATE}, "text"),
    (SearchRequest, {"query": SURROGATE}, "query"),
    (CommitteeRequest, {"messages": [{"role": "user", "content": SURROGATE}]}, "content"),
    (CommitteeRequest, {"messages": [{"role": "user", "content": "x"}], "members": [SURROGATE]}, "members"),
])
def test_each_schema_refuses_invalid_unicode(model, body, param):
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    found = [e for e in info.value.errors() if e["type"] == "invalid_unicode"]
    assert found and param in found[0]["loc"]


# ---- through the HTTP layer: 400 invalid_request naming the field ---------------------------

def make_client():
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    http_errors.install(app)
    seen = {}

    @app.post("/chat")
    async def chat(body: ChatCompletionRequest):
        seen["chat"] = body
        return {"ok": True}

    @app.post("/speech")
    async def speech(body: SpeechRequest):
        seen["speech"] = body
        return {"ok": True}

    @app.post("/committee")
    async def committee(body: CommitteeRequest):
        seen["committee"] = body
        return {"ok": True}

    @app.post("/transcribe")
    async def transcribe(file: Annotated[UploadFile, File()],
                         prompt: Annotated[Text | None, Form(max_length=50)] = None,
                         model: Annotated[Text, Form()] = "auto"):
        seen["form"] = {"prompt": prompt, "model": model}
        return {"ok": True}

    return TestClient(app, raise_server_exceptions=False), seen


def post_raw(client, path, raw: str):
    """`raw` is JSON text as a client writes it, so "\\ud800" stays a JSON escape."""
    return client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("path, raw, param", [
    ("/chat", '{"messages": [{"role": "user", "content": "bad \\ud800 x"}]}', "messages.0.content"),
    ("/chat", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "ok"}, '
              '{"type": "text", "text": "bad \\udfff"}]}]}', "messages.0.content.1.text"),
    ("/chat", '{"messages": [{"role": "user", "content": "x"}], "stop": ["a", "\\ud800"]}', "stop.1"),
    ("/chat", '{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}', "model"),
    ("/speech", '{"input": "hello \\ud800"}', "input"),
    ("/committee", '{"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "\\udc00"}]}',
     "messages.1.content"),
])
def test_invalid_unicode_is_a_400_naming_the_field(path, raw, param):
    client, seen = make_client()
    r = post_raw(client, path, raw)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_request", param)
    assert error["message"].startswith(f"{param}: contains invalid Unicode")
    assert "more errors" not in error["message"]  # a union's other members are not news
    assert not seen  # nothing reached the handler


def test_nul_and_control_characters_are_stripped_before_the_handler():
    client, seen = make_client()
    r = post_raw(client, "/speech", '{"input": "hello\\u0000 wor\\u001bld\\nbye", "voice": "joe\\u0000"}')
    assert r.status_code == 200
    assert (seen["speech"].input, seen["speech"].voice) == ("hello world\nbye", "joe")
    r = post_raw(client, "/chat", '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\u0000b"}]}]}')
    assert r.status_code == 200 and seen["chat"].messages[0].text() == "ab"


def test_text_that_is_only_control_characters_is_empty_and_refused():
    client, _ = make_client()
    r = post_raw(client, "/speech", '{"input": "\\u0000\\u0007"}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_form_parameters_are_cleaned_too():
    client, seen = make_client()
    r = client.post("/transcribe", files={"file": ("a.wav", b"RIFF")}, data={"prompt": "names:\x00 Ana", "model": "m\x1b"})
    assert r.status_code == 200 and seen["form"] == {"prompt": "names: Ana", "model": "m"}
    r = client.post("/transcribe", files={"file": ("a.wav", b"RIFF")}, data={"prompt": "x" * 60})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_a_body_that_is_not_utf8_is_a_400():
    client, seen = make_client()
    r = client.post("/chat", content=b'{"messages": [{"role": "user", "content": "bad \xed\xa0\x80 \xff"}]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request" and not seen


def test_union_members_do_not_hide_the_real_error():
    """A bad image part is reported there, not as "content should be a string"."""
    client, _ = make_client()
    r = post_raw(client, "/chat", '{"messages": [{"role": "user", "content": [{"type": "image_url", '
                                  '"image_url": {"url": ""}}]}]}')
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages.0.content.0.image_url.url"
    r = post_raw(client, "/chat", '{"messages": [{"content": "x"}]}')
    assert r.json()["error"]["param"] == "messages.0.role"
    r = post_raw(client, "/chat", '{"messages": [{"role": "user", "content": [{"type": "text"}]}]}')
    assert r.json()["error"]["param"] == "messages.0.content.0.text"


def test_param_walks_the_body_and_drops_union_labels():
    loc = ("body", "messages", 0, "content", "list[tagged-union[TextPart,ImagePart,AudioPart]]", 1, "text", "text")
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    assert http_errors._param(loc, body) == "messages.0.content.1.text"
    assert http_errors._param(("body", "messages", 0, "role"), {"messages": [{}]}) == "messages.0.role"
    assert http_errors._param(("body", "prompt"), None) == "prompt"
    assert http_errors._param(("query", "limit"), {"limit": 1}) == "limit"
    assert http_errors._param(("body",), None) is None

