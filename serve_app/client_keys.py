"""Client API keys and their per-minute limits, checked before a request's body is read.

Off unless `client_keys.file` names a keys file or the keys variable is set. Then a request to /v1
or /api (but health, the docs and /api/admin, which has its own token) needs `Authorization: Bearer
<key>`: none is 401, an unknown key 401 `invalid_api_key`; a key past its requests or tokens per
minute is 429 `rate_limit_exceeded` with `retry-after` (seconds until it has room). Keys are held
and logged only as SHA-256: the log line says `client` (the key's name) and `client_key` (the
first 12 hex digits of its hash). Tokens are counted when a request ends, from its calls' usage;
limits are per ingress replica (one replica by default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import yaml
from pydantic import ValidationError

from serve_app.auth import bearer
from serve_app.middleware import send_error
from vocabulary.access_config import ClientKey, ClientKeysFile, ClientKeysSpec
from vocabulary.errors import ConfigError, RateLimited, Unauthorized
from vocabulary.paths import config_path

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
WINDOW_S = 60.0
OPEN_PATHS = ("/api/health", "/api/health/live", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Client:
    name: str
    sha256: str
    rpm: int | None
    tpm: int | None
    requests: deque = field(default_factory=deque)  # admission times
    tokens: deque = field(default_factory=deque)  # (end time, tokens)

    @property
    def tag(self) -> str:
        return self.sha256[:12]


class KeyBook:
    """The known keys by hash, each with its own minute windows."""

    def __init__(self, keys: list[ClientKey], spec: ClientKeysSpec, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        for k in keys:
            sha = k.sha256 or digest(k.key)
            self._clients[sha] = Client(k.name, sha, k.rpm or spec.rpm, k.tpm or spec.tpm)

    def __len__(self) -> int:
        return len(self._clients)

    def find(self, key: str) -> Client | None:
        # Looked up by the key's hash: the time taken says nothing about how much of a key matched.
        return self._clients.get(digest(key))

    def admit(self, client: Client) -> None:
        """Count one request, or raise RateLimited (nothing counted) with the seconds until there is room."""
        now = self._clock()
        with self._lock:
            _expire(client, now)
            waits = []
            if client.rpm is not None and len(client.requests) >= client.rpm:
                waits.append(client.requests[-client.rpm] + WINDOW_S - now)
            if client.tpm is not None:
                spent = sum(n for _, n in client.tokens)
                if spent >= client.tpm:
                    waits.append(_tokens_free_at(client, spent - client.tpm + 1) - now)
            if waits:
                wait = max(1, math.ceil(max(waits)))
                limit = "requests" if client.rpm is not None and len(client.requests) >= client.rpm else "tokens"
                raise RateLimited(f"key {client.name!r} is over its {limit} per minute "
                                  f"(rpm {client.rpm}, tpm {client.tpm}): retry in {wait} s", retry_after_s=wait)
            client.requests.append(now)

    def spent(self, client: Client, tokens: int) -> None:
        if tokens > 0 and client.tpm is not None:
            with self._lock:
                client.tokens.append((self._clock(), tokens))


def _expire(client: Client, now: float) -> None:
    while client.requests and client.requests[0] <= now - WINDOW_S:
        client.requests.popleft()
    while client.tokens and client.tokens[0][0] <= now - WINDOW_S:
        client.tokens.popleft()


def _tokens_free_at(client: Client, needed: int) -> float:
    """When enough of the window's tokens have left it for `needed` more to fit."""
    freed = 0
    for at, n in client.tokens:
        freed += n
        if freed >= needed:
            return at + WINDOW_S
    return client.tokens[-1][0] + WINDOW_S


def load_keys(spec: ClientKeysSpec) -> KeyBook | None:
    """The keys in force: the file's and the variable's; None (keys off) when there are neither."""
    keys: list[ClientKey] = []
    if spec.file:
        path = config_path(spec.file)
        try:
            raw = path.read_text()
            data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
            keys += ClientKeysFile.model_validate(data).keys
        except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"client_keys.file {spec.file}: {exc}") from None
    listed = [k.strip() for k in os.environ.get(spec.env, "").split(",") if k.strip()]
    try:
        keys += [ClientKey(name=f"key-{i}", key=k) for i, k in enumerate(listed, 1)]
    except ValidationError as exc:
        raise ConfigError(f"{spec.env}: {exc}") from None
    return KeyBook(keys, spec) if keys else None


ADMIN_WRITES = {("PUT", "/api/flags")}  # admin endpoints outside /api/admin/: the admin token guards them


def _open(method: str, path: str) -> bool:
    return (path in OPEN_PATHS or path.startswith("/api/admin/") or (method, path) in ADMIN_WRITES
            or not path.startswith(("/v1/", "/api/")))


def _app_path(scope) -> str:
    """The path inside the app: under a route prefix, Serve keeps the prefix in `path` and names it
    in `root_path`."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def request_tokens(record) -> int:
    ctx = getattr(record, "ctx", None)
    return sum((c.get("tokens_in") or 0) + (c.get("tokens_out") or 0)
               for c in getattr(ctx, "calls", ()) or () if c.get("status") == "ok")


class ClientKeyMiddleware:
    """Inside the request log (a refusal gets its line), before the body is read."""

    def __init__(self, app, keys: Callable[[], KeyBook | None]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope, receive, send):
        book = self.keys() if scope["type"] == "http" else None
        if book is None or _open(scope.get("method", ""), _app_path(scope)):
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"), None)
        token = bearer(header.decode("latin-1") if header is not None else None)
        state = scope.setdefault("state", {})
        client = book.find(token) if token is not None else None
        if client is None:
            why = "no API key: send `Authorization: Bearer <key>`" if token is None else "the API key is not valid"
            logger.warning("request refused: API key", extra={"request_id": state.get("request_id"),
                                                              "path": scope.get("path"), "reason": why})
            return await send_error(send, Unauthorized(why, code="invalid_api_key"))
        record = state.get("record")
        if record is not None:
            record.client = {"name": client.name, "key": client.tag}
        try:
            book.admit(client)
        except RateLimited as exc:
            logger.warning("request refused: rate limit", extra={
                "request_id": state.get("request_id"), "client": client.name, "reason": exc.message})
            return await send_error(send, exc)
        try:
            await self.app(scope, receive, send)
        finally:
            book.spent(client, request_tokens(record))
