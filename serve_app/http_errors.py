"""Exception handlers of the FastAPI app: every error leaves as an OpenAI-shaped body.

Rejected requests are logged with their exact payload (long base64 shortened) and request id.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.errors import InvalidRequest, SwitchboardError, error_body
from serve_app.payload_log import loggable_body

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


def error_response(err: SwitchboardError, request: Request, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.http_status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON: {detail}".rstrip(": "), None
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid value")
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = SwitchboardError(str(exc.detail), code=code, http_status=exc.status_code)
        err.error_type = "invalid_request_error" if exc.status_code < 500 else "internal_error"
        return error_response(err, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.exception("unexpected error", extra={"request_id": request_id_of(request), "path": request.url.path})
        err = SwitchboardError(f"internal error (request id {request_id_of(request)})")
        return error_response(err, request)
