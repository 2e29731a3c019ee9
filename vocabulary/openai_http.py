"""The one way Switchboard opens an HTTP client to an OpenAI-compatible server (vLLM, llama.cpp's
server, TGI, a hosted API): base URL without a trailing slash, the API key from the environment
variable the config names (a missing variable is a clear ConfigError at start, never a KeyError
or a silent anonymous call), a request timeout, and a bounded connection pool.

Two clients: httpx (`openai_http_client`) where a call is rare (the prompt classifier, a vision
server), and aiohttp (`openai_session`) on the chat path of an upstream LLM, where the client's own
cost is paid on every request: a streamed one-token answer from a local server cost 0.18 ms of CPU
through aiohttp against 0.71-0.82 ms through httpx (1000 requests each, interleaved, this machine)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import httpx

from vocabulary.errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

READ_BUFSIZE = 1 << 20  # aiohttp reads a line of at most twice this: one SSE event (big tool arguments too)


def _auth_headers(base_url: str, api_key_env: str | None) -> dict[str, str]:
    headers = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"environment variable {api_key_env} (the API key of {base_url}) is not set")
        headers["Authorization"] = f"Bearer {key}"
    return headers


def openai_session(base_url: str, *, api_key_env: str | None, timeout_s: float,
                   max_connections: int = 64) -> "aiohttp.ClientSession":
    """An aiohttp session (make it inside the event loop that uses it) with the base URL, the key, a
    total timeout and at most `max_connections` connections, all kept alive; no proxy from the
    environment. Paths are relative to the base URL: `session.post("chat/completions")`."""
    import aiohttp

    base = base_url.rstrip("/") + "/"
    return aiohttp.ClientSession(base_url=base, headers=_auth_headers(base_url, api_key_env),
                                 timeout=aiohttp.ClientTimeout(total=timeout_s), read_bufsize=READ_BUFSIZE,
                                 connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections),
                                 trust_env=False)


def openai_http_client(base_url: str, *, api_key_env: str | None, timeout_s: float,
                       max_connections: int = 64) -> httpx.AsyncClient:
    headers = _auth_headers(base_url, api_key_env)
    return httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                             limits=httpx.Limits(max_connections=max_connections), trust_env=False)
