"""Pure ASGI middleware: request ids (in the ingress, and ahead of Serve's own HTTP servers), and
the body limits: one body over its size limit is a 413 before parsing; the bodies a replica holds at
once (every request in flight keeps its body until it ends) are bounded too, and a request whose body
would pass that bound is shed at once with a 503 and `retry-after` instead of growing the memory."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Callable

from vocabulary.errors import Overloaded, PayloadTooLarge, error_body

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


class BodyLimitMiddleware:
    """`limit()`: the largest body of one request; `in_flight()`: the most body bytes all the requests
    in flight may hold together (None: no bound). `held` is what they hold now. A shed request gets
    its request-log line (status 503, `overloaded`) like any other, and is counted with it."""

    def __init__(self, app, limit: Callable[[], int], in_flight: Callable[[], int | None] = lambda: None) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = in_flight
        self.held = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, bound = self.limit(), self.in_flight()
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(scope, send, int(declared), limit)
        reserved = 0  # what this request counts in `held`: its declared length, then what it received

        def reserve(size: int) -> bool:
            nonlocal reserved
            if size <= reserved:
                return True
            if bound is not None and self.held + size - reserved > bound:
                return False
            self.held += size - reserved
            reserved = size
            return True

        try:
            if declared is not None and declared.isdigit() and not reserve(int(declared)):
                return await self._shed(scope, send, int(declared), bound)
            # Read the whole body here (the app would buffer it anyway), so an oversized chunked
            # body is refused before any parsing and the app sees an ordinary request.
            chunks: list[bytes] = []
            received = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body = message.get("body", b"")
                received += len(body)
                if received > limit:
                    return await self._reject(scope, send, received, limit)
                if not reserve(received):
                    return await self._shed(scope, send, received, bound)
                chunks.append(body)
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            self.held -= reserved

    async def _reject(self, scope, send, size: int, limit: int) -> None:
        request_id = scope.get("state", {}).get("request_id")
        logger.warning("request body too large", extra={"request_id": request_id, "path": scope.get("path"),
                                                        "body_bytes": size, "limit_bytes": limit})
        await send_error(send, PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes"))

    async def _shed(self, scope, send, size: int, bound: int | None) -> None:
        request_id = scope.get("state", {}).get("request_id")
        logger.warning("request shed: bodies in flight at their bound", extra={
            "request_id": request_id, "path": scope.get("path"), "body_bytes": size, "held_bytes": self.held,
            "bound_bytes": bound})
        await send_error(send, Overloaded(f"the service holds {self.held} bytes of request bodies, its bound is "
                                           f"{bound}: retry shortly"))


async def send_error(send, err) -> None:
    payload = json.dumps(error_body(err)).encode()
    retry = [(b"retry-after", str(err.retry_after_s).encode())] if err.retry_after_s is not None else []
    await send({"type": "http.response.start", "status": err.http_status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *retry]})
    await send({"type": "http.response.body", "body": payload})



REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
# ASCII letters, digits and a few separators (UUIDs, ULIDs, base64, "svc:123/a"): nothing that
# can break a header, a log line or a terminal.
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,%d}" % MAX_REQUEST_ID_LENGTH)


def safe_request_id(value: bytes | str | None) -> str | None:
    """`value` when it is a usable request id: 1 to 128 safe ASCII characters; else None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            return None
    return value.decode("ascii") if _SAFE_REQUEST_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def _sent_request_id(scope) -> bytes | None:
    return next((v for k, v in scope.get("headers") or [] if k.lower() == REQUEST_ID_HEADER), None)


def _replaced(raw: bytes, request_id: str, scope) -> None:
    logger.warning("unusable x-request-id replaced", extra={
        "request_id": request_id, "path": scope.get("path"), "sent_length": len(raw), "sent": ascii(raw[:64])})


class RequestIdGuard:
    """Ahead of Serve's own HTTP servers (the proxy, and each ingress replica in high-throughput
    mode): an x-request-id that is not safe (non-ASCII, control characters, over 128 characters,
    empty, repeated) is replaced by a generated one before Serve reads it, so Serve neither fails
    decoding it (a plain-text 500) nor echoes it. A good one is kept; none at all is left to Serve.
    Installed with RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.middleware.serve_http_middlewares."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        sent = [v for k, v in headers if k.lower() == REQUEST_ID_HEADER]
        if sent:
            request_id = safe_request_id(sent[0])
            if request_id is None or len(sent) > 1:
                if request_id is None:
                    request_id = new_request_id()
                    _replaced(sent[0], request_id, scope)
                headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def serve_http_middlewares() -> list:
    """The callback Serve calls for its HTTP servers' middlewares
    (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, set in cluster/serve.env)."""
    from starlette.middleware import Middleware

    return [Middleware(RequestIdGuard)]


class RequestIdMiddleware:
    """Give every request an id (the x-request-id it came with if safe, else `fallback()` if safe,
    else a new one) and keep it in `request.state.request_id`. With `echo`, also return it in the
    `x-request-id` response header (replacing any other); Serve's HTTP servers already do that,
    after RequestIdGuard made the id safe, so the ingress does not."""

    def __init__(self, app, echo: bool = True, fallback=None) -> None:
        self.app = app
        self.echo = echo
        self.fallback = fallback

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent = _sent_request_id(scope)
        request_id = (safe_request_id(sent) or safe_request_id(self.fallback() if self.fallback else None)
                      or new_request_id())
        if sent is not None and request_id != safe_request_id(sent):
            _replaced(sent, request_id, scope)
        scope.setdefault("state", {})["request_id"] = request_id
        if not self.echo:
            return await self.app(scope, receive, send)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
