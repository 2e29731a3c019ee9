"""Who may call: the admin token for /api/admin/*, and `Authorization: Bearer` parsed one way for
both it and the client keys (serve_app/client_keys.py). Tokens are compared in constant time."""

from __future__ import annotations

import hmac
import os

from vocabulary.errors import Forbidden, Unauthorized

ADMIN_TOKEN_ENV = "SWITCHBOARD_ADMIN_TOKEN"


def bearer(header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (the scheme in any case); None when the header
    is absent, empty or of another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_secret(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def check_admin(authorization: str | None) -> None:
    """401 without a bearer token (or with admin endpoints off), 403 with a wrong one."""
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if not token:
        raise Unauthorized(f"admin endpoints are off: set {ADMIN_TOKEN_ENV} to enable them")
    sent = bearer(authorization)
    if sent is None:
        raise Unauthorized("admin endpoints need `Authorization: Bearer <admin token>`")
    if not same_secret(sent, token):
        raise Forbidden("the bearer token is not the admin token")
