"""The one way Switchboard opens an HTTP client to an OpenAI-compatible server (vLLM, llama.cpp's
server, TGI, a hosted API): base URL without a trailing slash, the API key from the environment
variable the config names (a missing variable is a clear ConfigError at start, never a KeyError
or a silent anonymous call), a request timeout, and a bounded connection pool."""

from __future__ import annotations

import os

import httpx

from vocabulary.errors import ConfigError


def openai_http_client(base_url: str, *, api_key_env: str | None, timeout_s: float,
                       max_connections: int = 64) -> httpx.AsyncClient:
    headers = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"environment variable {api_key_env} (the API key of {base_url}) is not set")
        headers["Authorization"] = f"Bearer {key}"
    return httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                             limits=httpx.Limits(max_connections=max_connections), trust_env=False)
