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

CHUNKS = [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hello"},
                                                                      "finish_reason": None}]},
          {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {},
                                                                      "finish_reason": "stop"}]}]


class SseServer:
    """HTTP/1.1 with keep-alive: each POST answered with CHUNKS and [DONE] as SSE, chunked; the last
    chunk comes a moment after [DONE] (as from a real server), or never with `hold_open`."""

    def __init__(self, hold_open: bool = False) -> None:
        self.hold_open = hold_open
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
            return backend._client._transport._pool
        finally:
            await backend.close()

    pool = asyncio.run(run())
    assert pool._max_connections == limit and pool._max_keepalive_connections == limit
