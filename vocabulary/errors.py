"""The one error hierarchy of Switchboard and its mapping to OpenAI-shaped error bodies.

Errors raised in deployments cross a Ray handle pickled; the ingress unwraps them with
`as_switchboard_error` and renders them with `error_body` — the only place an error body
is built.
"""

from __future__ import annotations

from typing import Any

from vocabulary.public_text import scrub


class SwitchboardError(Exception):
    http_status = 500
    error_type = "internal_error"
    code = "internal_error"
    retryable = False
    retry_after_s: int | None = None  # sent as the `retry-after` header when set

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status

    def __reduce__(self):  # keep attributes when pickled across a Ray handle
        return (_rebuild, (type(self), self.message, self.param, self.code, self.http_status))


def _rebuild(cls, message, param, code, http_status):
    return cls(message, param=param, code=code, http_status=http_status)


class InvalidRequest(SwitchboardError):
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ModelNotFound(SwitchboardError):
    http_status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFound(SwitchboardError):
    http_status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(SwitchboardError):
    http_status = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class Unauthorized(SwitchboardError):
    http_status = 401
    error_type = "authentication_error"
    code = "unauthorized"


class Forbidden(SwitchboardError):
    http_status = 403
    error_type = "permission_error"
    code = "forbidden"


class RateLimited(SwitchboardError):
    """A client key over its requests or tokens per minute; `retry_after_s` says when it has room."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfigError(SwitchboardError):
    """A roster entry that cannot be loaded (missing model file, bad path)."""

    code = "config_error"


class ModelError(SwitchboardError):
    """A model or engine failed while answering."""

    http_status = 502
    error_type = "model_error"
    code = "model_error"
    retryable = True


class UpstreamError(SwitchboardError):
    """An OpenAI-compatible upstream answered with an error; its status and message are kept."""

    error_type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(message, param=param, code=code, http_status=http_status or 502)
        self.retryable = self.http_status >= 500 or self.http_status == 429
        if 400 <= self.http_status < 500:
            self.error_type = "invalid_request_error"


class DeadlineExceeded(SwitchboardError):
    http_status = 504
    error_type = "timeout_error"
    code = "deadline_exceeded"
    retryable = True


class PlatformError(SwitchboardError):
    """A limit of the platform (a message over a transport's cap, a replica that cannot be reached
    for a reason that is not the model's) or a bug of ours: never counted against a model, logged
    with its traceback."""

    error_type = "internal_error"
    code = "platform_error"


class ServiceUnavailable(SwitchboardError):
    http_status = 503
    error_type = "service_unavailable"
    code = "service_unavailable"
    retryable = True


class Overloaded(ServiceUnavailable):
    """Shed at once instead of queued without bound: a deployment's queue is at its bound (Serve's
    max_queued_requests) or the ingress holds too much. Not the model's failure; retry shortly."""

    code = "overloaded"
    retry_after_s = 1


def as_switchboard_error(exc: BaseException) -> SwitchboardError | None:
    """Find a SwitchboardError in `exc`, unwrapping Ray's task errors."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # ray.exceptions.RayTaskError keeps the original in `cause`; check it first, since
        # Ray's wrapper may also subclass the original type without its attributes.
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException) and cause is not current:
            current = cause
            continue
        if isinstance(current, SwitchboardError):
            return current
        current = current.__cause__ or current.__context__
    return None


def error_body(err: SwitchboardError) -> dict[str, Any]:
    """The OpenAI-shaped body a client gets. A server-side failure's message is scrubbed of internal
    addresses and paths (vocabulary/public_text.py); the log keeps it whole."""
    message = scrub(err.message) if err.http_status >= 500 else err.message
    return {"error": {"message": message, "type": err.error_type, "param": err.param, "code": err.code}}
