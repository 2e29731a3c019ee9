"""Exception handlers of the FastAPI app: every error leaves as an OpenAI-shaped body.

Rejected requests are logged with their exact payload (long base64 shortened) and request id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.payload_log import loggable_body
from serve_app.schemas.text import INVALID_UNICODE
from graphs.deadline import DeadlineExpired
from vocabulary.errors import DeadlineExceeded, InvalidRequest, SwitchboardError, error_body

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


def error_response(err: SwitchboardError, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    if err.retry_after_s is not None:
        headers = {"retry-after": str(err.retry_after_s), **(headers or {})}
    return JSONResponse(error_body(err), status_code=err.http_status, headers=headers)


# Segments pydantic adds to an error's location for the members of a union
# ("function-before[clean_text(), str]", "list[tagged-union[...]]", "str", "none"): not fields.
_UNION_LABEL = re.compile(r"[\[\](), ]|^(str|int|float|bool|none|list|dict|bytes)$")
_LOCATIONS = ("body", "query", "header", "path", "cookie")


def _param(loc: tuple, body: Any) -> str | None:
    """The field an error is about, as a dotted path into what the client sent
    (`messages.0.content.1.text`): union labels and discriminator tags are left out by walking
    the location along the body itself."""
    parts = list(loc)
    where = parts.pop(0) if parts and parts[0] in _LOCATIONS else None
    out: list[str] = []
    walkable = where == "body" and isinstance(body, (Mapping, list))
    node = body
    for i, part in enumerate(parts):
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(str(part))
            node = node[part]
        elif not walkable and (isinstance(part, int) or not _UNION_LABEL.search(str(part))):
            out.append(str(part))  # no body to walk (form, query): keep what is not a union label
        elif isinstance(node, Mapping) and i == len(parts) - 1 and not _UNION_LABEL.search(str(part)):
            out.append(str(part))  # a missing field
        # else: a union member's label or a discriminator's tag
    return ".".join(out) or None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    if errors[0].get("type") == "json_invalid":
        detail = (errors[0].get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON: {detail}".rstrip(": "), None
    located = [(e, _param(tuple(e.get("loc", ())), exc.body)) for e in errors]
    # Invalid text first; else the error that reached deepest into the body (of a union's members,
    # the one the client meant: a bad text part, not "content is not a string").
    first, param = min(located, key=lambda ep: (ep[0].get("type") != INVALID_UNICODE,
                                                -len((ep[1] or "").split("."))))
    # Others about the same field, or a field above it (a union's other members), are not news.
    others = {p for _, p in located if p != param and not (param or "").startswith(f"{p}.")}
    msg = first.get("msg", "invalid value")
    more = f" (and {len(others)} more errors)" if others else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        logger.warning("request rejected", extra={
            "request_id": request_id_of(request), "path": request.url.path, "status": 400,
            "reason": message, "payload": loggable_body(exc.body)})
        return error_response(InvalidRequest(message, param=param), request)

    @app.exception_handler(SwitchboardError)
    async def _switchboard(request: Request, exc: SwitchboardError):
        level = logging.WARNING if exc.http_status < 500 else logging.ERROR
        logger.log(level, "request failed", extra={
            "request_id": request_id_of(request), "path": request.url.path, "status": exc.http_status,
            "code": exc.code, "reason": exc.message})
        return error_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = SwitchboardError(str(exc.detail), code=code, http_status=exc.status_code)
        err.error_type = "invalid_request_error" if exc.status_code < 500 else "internal_error"
        return error_response(err, request)

    @app.exception_handler(DeadlineExpired)
    async def _deadline(request: Request, exc: DeadlineExpired):
        """A deadline that expires anywhere is the request's 504, never a 500."""
        logger.warning("request failed", extra={"request_id": request_id_of(request), "path": request.url.path,
                                                 "status": 504, "code": "deadline_exceeded", "reason": str(exc)})
        return error_response(DeadlineExceeded(f"the request's deadline passed: {exc}"), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.exception("unexpected error", extra={"request_id": request_id_of(request), "path": request.url.path})
        err = SwitchboardError(f"internal error (request id {request_id_of(request)})")
        return error_response(err, request)
