"""A client for an OpenAI-compatible server the user already runs (vLLM, llama.cpp, TGI).

The upstream's own error (status and message) is kept: a 400 from vLLM reaches the log and
the client as vLLM wrote it, not as a generic 502.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, AsyncIterator

import aiohttp

from vocabulary.backend_specs import UpstreamBackend as UpstreamSpec
from deployments.llm.backend import EngineCounters
from vocabulary.calls import ChatCall
from vocabulary.errors import DeadlineExceeded, ModelError, UpstreamError
from vocabulary.openai_http import openai_session

_NEVER = threading.Event()  # the remote engine's own cancellation is not seen from here
# After [DONE] the rest of the body (the chunked encoding's last chunk) is read, so that the connection
# goes back to the pool: a response closed before its end closes its connection, and every request
# would open a new one. A server that keeps the stream open longer loses its connection, as before.
DRAIN_S = 0.5
JSON = {"content-type": "application/json"}
logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


class UpstreamBackend:
    def __init__(self, spec: UpstreamSpec) -> None:
        self._spec = spec
        self._session: aiohttp.ClientSession | None = None
        # The engine is remote: tokens are counted as they arrive; closing the stream closes the
        # connection, which stops the server's generation (vLLM, llama.cpp's server).
        self.counters = EngineCounters()

    async def start(self) -> None:
        self._session = openai_session(self._spec.base_url, api_key_env=self._spec.api_key_env,
                                       timeout_s=self._spec.timeout_s, max_connections=self._spec.max_connections)

    def _body(self, call: ChatCall, stream: bool) -> bytes:
        body = {"model": self._spec.model, "messages": call.messages, "stream": stream, **call.sampling()}
        if stream:
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body).encode()

    def _timeout(self, call: ChatCall) -> aiohttp.ClientTimeout:
        """The call's budget bounds the whole answer; `timeout_s` bounds connecting and each read (a
        long answer streams as long as its budget allows, a silent server fails after timeout_s)."""
        each = max(0.001, min(self._spec.timeout_s, call.budget_s))
        return aiohttp.ClientTimeout(total=max(0.001, call.budget_s), sock_connect=each, sock_read=each)

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        session = self._require()
        seen = finished = False
        pieces, usage = 0, False
        self.counters.began()
        try:
            async with session.post("chat/completions", data=self._body(call, True), headers=JSON,
                                    timeout=self._timeout(call)) as resp:
                if resp.status >= 400:
                    raise self._error(resp.status, await resp.read(), call)
                async for raw in resp.content:
                    if not raw.startswith(b"data:"):
                        continue
                    data = raw[5:].strip()
                    if data == b"[DONE]":
                        await _drain(resp)
                        if not finished:  # llama-cpp-python's server ends a stream so when another request comes
                            raise UpstreamError(
                                "upstream ended the stream without a finish reason: the answer is incomplete "
                                "(llama-cpp-python's server cuts a stream when another request arrives, unless "
                                "started with --interrupt_requests false)",
                                http_status=502, code="upstream_stream_incomplete")
                        if not usage:  # the server does not report usage (llama-cpp-python's does not)
                            yield _estimated_usage(call, pieces)
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        err = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
                        raise UpstreamError(f"upstream stream error: {err.get('message')}", http_status=502)
                    if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                        self.counters.produced(1, _NEVER)
                        pieces += 1
                    finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
                    usage = usage or bool(chunk.get("usage"))
                    seen = True
                    yield chunk
                # An OpenAI-compatible stream ends with [DONE]; without it the answer is cut short
                # (llama.cpp's server, for one, answers 200 and closes on a prompt over its context).
                if not seen:  # nothing at all: ask once without streaming, for the upstream's own error
                    await self._raise_why_empty(call)
                raise UpstreamError("upstream stream ended before [DONE]: the answer is incomplete",
                                    http_status=502, code="upstream_stream_incomplete")
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            raise DeadlineExceeded(f"upstream {self._spec.base_url} did not answer in time") from exc
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: an event longer than the read buffer
            if not seen:  # it hung up before any event (llama.cpp's server does, on a prompt over its window)
                await self._raise_why_empty(call)
            raise ModelError(f"upstream {self._spec.base_url} failed: {type(exc).__name__}") from exc
        finally:
            self.counters.ended()

    async def _raise_why_empty(self, call: ChatCall) -> None:
        """The same request, not streamed: an upstream that refuses it says why (a 400 with its
        message and code, e.g. context_length_exceeded), which its empty stream did not."""
        try:
            async with self._require().post("chat/completions", data=self._body(call, False), headers=JSON,
                                            timeout=self._timeout(call)) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            return  # it cannot say: the caller reports the stream's own failure
        if status >= 400:
            raise self._error(status, raw, call)

    def special_texts(self) -> list[str]:
        return []  # the server's tokenizer is not known here: the common markers only

    async def check(self) -> None:
        """GET /models; the deployment does not call it while an answer streams, which
        llama-cpp-python's server (interrupt_requests on, its default) would cut short."""
        try:
            async with self._require().get("models", timeout=aiohttp.ClientTimeout(total=5.0)) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ModelError(f"upstream {self._spec.base_url} unreachable: {type(exc).__name__}") from exc
        if status >= 400:
            raise self._error(status, raw, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise ModelError("upstream client is not started")
        return self._session

    def _error(self, status: int, raw: bytes, call: ChatCall | None) -> UpstreamError:
        message, code, param = _parse_error(raw)
        logger.warning(
            "upstream error",
            extra={
                "request_id": call.request_id if call else None,
                "upstream": self._spec.base_url,
                "upstream_status": status,
                "upstream_body": raw[:2000].decode("utf-8", "replace"),
            },
        )
        return UpstreamError(f"upstream returned {status}: {message}", http_status=status, code=code, param=param)


async def _drain(resp: aiohttp.ClientResponse) -> None:
    try:
        async with asyncio.timeout(DRAIN_S):
            await resp.read()
    except (TimeoutError, aiohttp.ClientError):
        pass  # the connection is closed instead of reused; the answer is whole either way


def _estimated_usage(call: ChatCall, pieces: int) -> dict[str, Any]:
    """Usage for a server that reports none, marked as estimated: OpenAI-compatible servers stream
    about one token per chunk; the prompt is counted at four characters a token."""
    chars = sum(len(m.get("content") or "") if isinstance(m.get("content"), str) else 0 for m in call.messages)
    prompt = max(1, round(chars / 4))
    return {"id": None, "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": pieces, "total_tokens": prompt + pieces,
                      "estimated": True}}


def _parse_error(raw: bytes) -> tuple[str, str | None, str | None]:
    """The message, code and param of an upstream error body, whatever its shape."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return (text[:500] or "(empty body)"), None, None
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        message = err.get("message") or err.get("detail") or json.dumps(err)[:500]
        code = err.get("code")
        return str(message), (str(code) if code is not None else None), err.get("param")
    return str(err)[:500], None, None
