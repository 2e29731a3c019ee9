"""The upstream backend's HTTP client against a small SSE server on loopback (no Ray): streamed
answers reuse one kept-alive connection, and a server that holds a stream open after [DONE] costs
the answer nothing."""

import asyncio
import json
import time

import pytest

from deployments.llm import upstream_backend
from deployments.llm.upstream_backend import UpstreamBackend
from vocabulary.backend_specs import UpstreamBackend as UpstreamSpec
from vocabulary.calls import ChatCall
from vocabulary.errors import DeadlineExceeded, SwitchboardError, UpstreamError

CHUNKS = [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hello"},
                                                                      "finish_reason": None}]},
          {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {},
                                                                      "finish_reason": "stop"}]}]


class SseServer:
    """HTTP/1.1 with keep-alive: each POST answered with CHUNKS and [DONE] as SSE, chunked; the last
    chunk comes a moment after [DONE] (as from a real server), or never with `hold_open`."""

    def __init__(self, hold_open: bool = False, mode: str = "ok") -> None:
        self.hold_open = hold_open
        self.mode = mode  # ok | error (a 400 with an OpenAI error body) | cut (hangs up after one event)
        self.connections = 0
        self.requests = 0
        self._server = None
        self._writers: set = set()

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                self.requests += 1
                if self.mode == "error":
                    body = json.dumps({"error": {"message": "too long for me", "code": "context_length_exceeded",
                                                 "param": "messages"}}).encode()
                    writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    continue
                if self.mode == "cut":
                    data = f"data: {json.dumps(CHUNKS[0])}\n\n".encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                for event in [json.dumps(c) for c in CHUNKS] + ["[DONE]"]:
                    data = f"data: {event}\n\n".encode()
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
                if self.hold_open:
                    await asyncio.sleep(30)
                await asyncio.sleep(0.01)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _call(n: int) -> ChatCall:
    return ChatCall(request_id=f"r{n}", messages=[{"role": "user", "content": "Hi"}], budget_s=10.0)


async def _stream(backend: UpstreamBackend, n: int) -> list[dict]:
    return [chunk async for chunk in backend.chat_stream(_call(n))]


def test_streamed_answers_reuse_one_kept_alive_connection():
    async def run():
        async with SseServer() as server:
            backend = UpstreamBackend(UpstreamSpec(kind="upstream", base_url=f"http://127.0.0.1:{server.port}/v1",
                                                   model="m"))
            await backend.start()
            try:
                answers = [await _stream(backend, n) for n in range(5)]
            finally:
                await backend.close()
            return server, answers

    server, answers = asyncio.run(run())
    assert server.requests == 5 and server.connections == 1
    for chunks in answers:
        assert chunks[0]["choices"][0]["delta"]["content"] == "Hello"
        assert chunks[-1]["usage"]["estimated"] is True  # the server reported no usage


def test_a_stream_held_open_after_done_still_ends_the_answer_promptly(monkeypatch):
    monkeypatch.setattr(upstream_backend, "DRAIN_S", 0.2)

    async def run():
        async with SseServer(hold_open=True) as server:
            backend = UpstreamBackend(UpstreamSpec(kind="upstream", base_url=f"http://127.0.0.1:{server.port}/v1",
                                                   model="m"))
            await backend.start()
            try:
                started = time.perf_counter()
                first = await _stream(backend, 0)
                second = await _stream(backend, 1)  # a new connection: the held one was closed
                return server, first, second, time.perf_counter() - started
            finally:
                await backend.close()

    server, first, second, took = asyncio.run(run())
    assert first == second and first[0]["choices"][0]["delta"]["content"] == "Hello"
    assert took < 5 and server.connections == 2


@pytest.mark.parametrize("limit", [1, 64])
def test_the_client_keeps_connections_alive_up_to_its_limit(limit):
    async def run():
        backend = UpstreamBackend(UpstreamSpec(kind="upstream", base_url="http://127.0.0.1:9/v1", model="m",
                                               max_connections=limit))
        await backend.start()
        try:
            connector = backend._session.connector
            return connector.limit, connector.limit_per_host, connector.force_close
        finally:
            await backend.close()

    assert asyncio.run(run()) == (limit, limit, False)  # kept alive, at most `limit` at once


def _backend(port: int) -> UpstreamBackend:
    return UpstreamBackend(UpstreamSpec(kind="upstream", base_url=f"http://127.0.0.1:{port}/v1", model="m"))


def test_the_upstreams_own_error_reaches_the_caller_with_its_status_code_and_param():
    async def run():
        async with SseServer(mode="error") as server:
            backend = _backend(server.port)
            await backend.start()
            try:
                with pytest.raises(UpstreamError) as info:
                    await _stream(backend, 0)
                return info.value
            finally:
                await backend.close()

    err = asyncio.run(run())
    assert err.http_status == 400 and err.code == "context_length_exceeded" and err.param == "messages"
    assert "too long for me" in err.message


def test_a_stream_cut_before_done_is_an_error_not_a_short_answer():
    async def run():
        async with SseServer(mode="cut") as server:
            backend = _backend(server.port)
            await backend.start()
            got = []
            try:
                with pytest.raises(SwitchboardError) as info:
                    async for chunk in backend.chat_stream(_call(0)):
                        got.append(chunk)
                return got, info.value
            finally:
                await backend.close()

    got, err = asyncio.run(run())
    assert got == [CHUNKS[0]] and err.http_status == 502, err


def test_a_silent_server_is_a_deadline_not_a_hang():
    async def run():
        server = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = UpstreamBackend(UpstreamSpec(kind="upstream", base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                               timeout_s=0.3))
        await backend.start()
        started = time.perf_counter()
        try:
            with pytest.raises(DeadlineExceeded):
                await _stream(backend, 0)
            return time.perf_counter() - started
        finally:
            await backend.close()
            server.close()

    assert asyncio.run(run()) < 10
