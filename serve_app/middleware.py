"""Pure ASGI middleware of the ingress: request ids, and the body-size limit (413 before parsing)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Callable

from serve_app.errors import PayloadTooLarge, error_body

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


class BodyLimitMiddleware:
    def __init__(self, app, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit()
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(scope, send, int(declared), limit)

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

    async def _reject(self, scope, send, size: int, limit: int) -> None:
        request_id = scope.get("state", {}).get("request_id")
        logger.warning("request body too large", extra={"request_id": request_id, "path": scope.get("path"),
                                                        "body_bytes": size, "limit_bytes": limit})
        err = PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes")
        payload = json.dumps(error_body(err)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})



REQUEST_ID_HEADER = b"x-request-id"


class RequestIdMiddleware:
    """Give every request an id (the x-request-id it came with if sane, else `fallback()`, else a
    new one) and keep it in `request.state.request_id`. With `echo`, also return it in the
    `x-request-id` response header; Serve's proxies already do that, so the ingress does not."""

    def __init__(self, app, echo: bool = True, fallback=None) -> None:
        self.app = app
        self.echo = echo
        self.fallback = fallback

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = sent if 0 < len(sent) <= 128 and sent.isprintable() else None
        request_id = request_id or (self.fallback() if self.fallback else None) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        if not self.echo:
            return await self.app(scope, receive, send)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
