"""The one place a request's log line is written: a pure ASGI middleware around the whole app, so
no endpoint, error, 413, 404, stream or client that leaves can skip it. The line is in the file
before the last bytes of the answer leave (the end of a body, or a stream's `[DONE]`), so a client
that got a whole answer has its line even if the replica dies the next moment."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable

from serve_app.request_log.record import RequestRecord
from serve_app.request_log.writer import RequestLog

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
SSE_DONE = b"data: [DONE]\n\n"
WRITE_WAIT_S = 5.0  # the answer is never held longer than this for its line
MAX_ERROR_BODY = 65536


class RequestLogMiddleware:
    def __init__(self, app, log: Callable[[], RequestLog | None],
                 on_line: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.app = app
        self.log = log
        self.on_line = on_line

    async def __call__(self, scope, receive, send):
        log = self.log() if scope["type"] == "http" else None
        if log is None:
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        record = RequestRecord(state.get("request_id") or "-", scope.get("path", ""), scope.get("method", ""),
                               log.replica)
        state["record"] = record
        written = None

        def finish():
            nonlocal written
            if written is None:
                route = getattr(scope.get("route"), "path", None)  # the template the router matched
                if route:
                    record.endpoint = route
                line = record.line((time.perf_counter() - record.started) * 1000)
                if self.on_line is not None:
                    try:
                        self.on_line(line)
                    except Exception:  # metrics never cost a request its line
                        logger.exception("metrics of a request failed", extra={"request_id": record.request_id})
                written = log.submit(record, line)
            return written

        async def send_logged(message):
            if message["type"] == "http.response.start":
                record.status = message["status"]
                headers = dict(message.get("headers") or [])
                record.stream = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                last = not message.get("more_body", False)
                if record.status is not None and record.status >= 400 and last and record.error_code is None:
                    record.error_code = _error_code(body)
                if last or (record.stream and body.endswith(SSE_DONE)):
                    future = finish()
                    try:
                        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), WRITE_WAIT_S)
                    except TimeoutError:
                        logger.warning("request log line late", extra={"request_id": record.request_id})
            try:
                await send(message)
            except BaseException:
                record.client_gone = True
                raise

        try:
            await self.app(scope, receive, send_logged)
        except asyncio.CancelledError:  # the client left (Serve cancels the request)
            record.client_gone = True
            raise
        except BaseException:
            if record.status is None:
                record.status = 500
                record.error_code = record.error_code or "internal_error"
            raise
        finally:
            if written is None:
                if not record.client_gone and (record.status is None or record.stream):
                    record.client_gone = True  # no answer at all (the body never came), or a stream cut short
                finish()  # on the writer thread: written even when this task is being cancelled


def _error_code(body: bytes) -> str | None:
    if not body or len(body) > MAX_ERROR_BODY:
        return None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") or error.get("type") if isinstance(error, dict) else None

