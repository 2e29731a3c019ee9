"""Client API keys: who gets in, the per-key minute windows, and the refusals as a client sees them."""

import hashlib

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_app import http_errors
from serve_app.client_keys import ClientKeyMiddleware, KeyBook, load_keys
from vocabulary.access_config import ClientKey, ClientKeysSpec
from vocabulary.errors import ConfigError, RateLimited

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def book(clock, **spec):
    keys = [ClientKey(name="alice", key=ALICE, rpm=3),
            ClientKey(name="bob", sha256=hashlib.sha256(BOB.encode()).hexdigest(), tpm=100)]
    return KeyBook(keys, ClientKeysSpec(**spec), clock)


def test_requests_per_minute_with_the_seconds_until_there_is_room():
    clock = Clock()
    keys = book(clock)
    alice = keys.find(ALICE)
    for step in (0, 10, 20):
        clock.now = 1000 + step
        keys.admit(alice)
    clock.now = 1030
    with pytest.raises(RateLimited) as info:
        keys.admit(alice)
    assert info.value.http_status == 429 and info.value.retry_after_s == 30  # the first leaves at 1060
    assert "requests per minute" in info.value.message
    clock.now = 1060.5
    keys.admit(alice)  # the first left the window: room for one
    with pytest.raises(RateLimited):
        keys.admit(alice)


def test_tokens_per_minute_count_what_requests_spent():
    clock = Clock()
    keys = book(clock)
    bob = keys.find(BOB)
    assert bob.name == "bob" and bob.rpm is None  # found by the hash the file gave
    keys.admit(bob)
    keys.spent(bob, 60)
    clock.now += 5
    keys.admit(bob)
    keys.spent(bob, 50)  # 110 of 100: the next request waits until the first 60 leave
    clock.now += 5
    with pytest.raises(RateLimited) as info:
        keys.admit(bob)
    assert info.value.retry_after_s == 50 and "tokens per minute" in info.value.message
    clock.now = 1060
    keys.admit(bob)


def test_unknown_keys_and_defaults(monkeypatch):
    clock = Clock()
    keys = book(clock, rpm=5)
    assert keys.find("alice-key-012345678") is None and keys.find(ALICE.upper()) is None
    assert keys.find(BOB).rpm == 5  # the default where the key has none
    monkeypatch.delenv("SWITCHBOARD_API_KEYS", raising=False)
    assert load_keys(ClientKeysSpec()) is None  # off by default
    monkeypatch.setenv("SWITCHBOARD_API_KEYS", f" {ALICE} ,{BOB},")
    loaded = load_keys(ClientKeysSpec(tpm=7))
    assert len(loaded) == 2 and loaded.find(BOB).name == "key-2" and loaded.find(BOB).tpm == 7
    monkeypatch.setenv("SWITCHBOARD_API_KEYS", "short")
    with pytest.raises(ConfigError, match="SWITCHBOARD_API_KEYS"):
        load_keys(ClientKeysSpec())


def test_a_keys_file_that_does_not_validate_stops_start_up(tmp_path, monkeypatch):
    monkeypatch.delenv("SWITCHBOARD_API_KEYS", raising=False)
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n  - name: a\n    key: {ALICE}\n    sha256: '{'0' * 64}'\n")
    with pytest.raises(ConfigError, match="exactly one of key and sha256"):
        load_keys(ClientKeysSpec(file=str(path)))
    path.write_text(f"keys:\n  - name: a\n    key: {ALICE}\n    rpm: 2\n")
    assert load_keys(ClientKeysSpec(file=str(path))).find(ALICE).rpm == 2


def make_client(keys):
    app = FastAPI()
    app.add_middleware(ClientKeyMiddleware, keys=lambda: keys)
    http_errors.install(app)

    @app.post("/v1/chat/completions")
    async def chat():
        return {"ok": True}

    @app.get("/api/health")
    async def health():
        return {"status": "ok"}

    @app.get("/api/admin/breakers")
    async def admin():
        return {}

    return TestClient(app, raise_server_exceptions=False)


def test_the_middleware_refuses_with_openai_shaped_errors():
    client = make_client(book(Clock()))
    r = client.post("/v1/chat/completions")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert "no API key" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", headers={"authorization": "Bearer not-a-key-at-all-000"})
    assert r.status_code == 401 and "not valid" in r.json()["error"]["message"]
    for _ in range(3):
        assert client.post("/v1/chat/completions", headers={"authorization": f"bearer {ALICE}"}).status_code == 200
    r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {ALICE}"})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1
    # Health, the docs and the admin endpoints (their own token) need no client key.
    assert client.get("/api/health").status_code == 200 and client.get("/openapi.json").status_code == 200
    assert client.get("/api/admin/breakers").status_code == 200
    assert make_client(None).post("/v1/chat/completions").status_code == 200  # keys off
