"""Request ids: a good x-request-id is kept, a bad one (non-ASCII, overlong, empty, unsafe
characters, repeated) is replaced by a generated one; responses always carry a safe id. Both in
the ingress (RequestIdMiddleware) and ahead of Serve's own HTTP servers (RequestIdGuard)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from serve_app import http_errors
from serve_app.middleware import (
    MAX_REQUEST_ID_LENGTH,
    RequestIdGuard,
    RequestIdMiddleware,
    safe_request_id,
    serve_http_middlewares,
)

SAFE = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
GOOD = ["abc-123", "3f2b9c1e-8a4d-4f7e-9c2a-1b2c3d4e5f60", "req_01HZX", "svc:42/a+b=", "a" * MAX_REQUEST_ID_LENGTH]
BAD = ["", "x" * (MAX_REQUEST_ID_LENGTH + 1), "x" * 10_000, "a b", "a\tb", "caf\u00e9", "id\u202eevil", "<script>",
       "a;b", 'a"b', "a,b"]


@pytest.mark.parametrize("good", GOOD)
def test_safe_ids_are_kept(good):
    assert safe_request_id(good) == good and safe_request_id(good.encode()) == good


@pytest.mark.parametrize("bad", BAD)
def test_unsafe_ids_are_refused(bad):
    assert safe_request_id(bad) is None


@pytest.mark.parametrize("raw", [b"caf\xe9", b"caf\xc3\xa9", b"\xff\xfe", b"a\x00b", b"a\r\nb"])
def test_raw_non_ascii_bytes_are_refused(raw):
    assert safe_request_id(raw) is None


def test_none_is_none():
    assert safe_request_id(None) is None


# ---- the ingress middleware ------------------------------------------------------------------

def ingress_client(fallback=None):
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware, fallback=fallback)
    http_errors.install(app)

    @app.get("/id")
    async def show(request: Request):
        return {"request_id": http_errors.request_id_of(request)}

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("good", GOOD)
def test_the_ingress_keeps_a_good_id(good):
    r = ingress_client().get("/id", headers={"x-request-id": good})
    assert r.status_code == 200 and r.headers.get_list("x-request-id") == [good] and r.json()["request_id"] == good


@pytest.mark.parametrize("bad", [b.encode("utf-8") for b in BAD] + [b"caf\xe9", b"\xff"])
def test_the_ingress_replaces_a_bad_id(bad):
    r = ingress_client().get("/id", headers=[(b"x-request-id", bad)])
    assert r.status_code == 200
    (sent_back,) = r.headers.get_list("x-request-id")
    assert SAFE.fullmatch(sent_back) and sent_back.encode() != bad and r.json()["request_id"] == sent_back


def test_the_ingress_makes_one_when_none_came():
    r = ingress_client().get("/id")
    assert SAFE.fullmatch(r.headers["x-request-id"]) and r.json()["request_id"] == r.headers["x-request-id"]


def test_an_unsafe_fallback_is_not_used_either():
    r = ingress_client(fallback=lambda: "caf\u00e9 " * 50).get("/id", headers={"x-request-id": ""})
    assert SAFE.fullmatch(r.json()["request_id"])
    r = ingress_client(fallback=lambda: "from-serve-1").get("/id", headers={"x-request-id": ""})
    assert r.json()["request_id"] == "from-serve-1"


# ---- the guard ahead of Serve's HTTP servers --------------------------------------------------

def serve_like_app():
    """What Serve does behind the guard: decode the id as UTF-8 (a 500 if it cannot), and echo
    whatever it got (ray.serve._private.http_util.RequestIdMiddleware and the replica)."""
    async def app(scope, receive, send):
        sent = [v for k, v in scope["headers"] if k == b"x-request-id"]
        request_id = sent[-1].decode("utf-8") if sent else "serve-generated"
        body = request_id.encode("utf-8")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-request-id", request_id.encode("latin-1")),
                                (b"x-ids-seen", str(len(sent)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def guarded_client():
    return TestClient(RequestIdGuard(serve_like_app()), raise_server_exceptions=False)


@pytest.mark.parametrize("good", GOOD)
def test_the_guard_passes_a_good_id(good):
    r = guarded_client().get("/", headers={"x-request-id": good})
    assert r.headers["x-request-id"] == good


@pytest.mark.parametrize("bad", [b.encode("utf-8") for b in BAD] + [b"caf\xe9", b"\xff\xfe"])
def test_the_guard_replaces_a_bad_id_before_serve_reads_it(bad):
    r = guarded_client().get("/", headers=[(b"x-request-id", bad)])
    assert r.status_code == 200 and SAFE.fullmatch(r.headers["x-request-id"]) and r.text == r.headers["x-request-id"]


def test_the_guard_leaves_a_missing_id_to_serve():
    assert guarded_client().get("/").headers["x-request-id"] == "serve-generated"


def test_the_guard_keeps_exactly_one_id():
    r = guarded_client().get("/", headers=[(b"x-request-id", b"first-1"), (b"x-request-id", b"second-2")])
    assert r.headers["x-request-id"] == "first-1" and r.headers["x-ids-seen"] == "1"


def test_without_the_guard_serve_would_fail():
    """The failure the guard prevents (the issue's plain-text 500)."""
    client = TestClient(serve_like_app(), raise_server_exceptions=False)
    assert client.get("/", headers=[(b"x-request-id", b"caf\xe9")]).status_code == 500


def test_the_serve_callback_returns_the_guard():
    (middleware,) = serve_http_middlewares()
    assert isinstance(middleware, Middleware) and middleware.cls is RequestIdGuard


def test_the_callback_is_configured_for_local_runs():
    from serve_app.local_env import local_env

    assert local_env()["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == "serve_app.middleware.serve_http_middlewares"
