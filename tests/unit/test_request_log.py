"""The request log without Ray: one whole line per request whatever its end, written before the
answer's last bytes leave, rotated by size, read back with filters."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from serve_app.request_log.middleware import RequestLogMiddleware
from serve_app.request_log.reader import contains, parse_since, read_feedback, read_lines, select
from serve_app.request_log.record import RequestRecord
from serve_app.request_log.writer import RequestLog, log_files
from vocabulary.request_log_config import RequestLogSpec


def make_log(tmp_path, **spec) -> RequestLog:
    log = RequestLog(RequestLogSpec(dir=str(tmp_path), redact="off", **spec), "ingress#1 x")
    log.start()
    return log


def lines_of(log: RequestLog) -> list[dict]:
    return list(read_lines(log.dir))


def app_with(log: RequestLog, seen: list | None = None, streaming: asyncio.Event | None = None) -> Starlette:
    async def ok(request):
        request.state.record.ctx = None
        log.redact_later(request.state.record, "hello there")
        return JSONResponse({"ok": True})

    async def bad(request):
        return JSONResponse({"error": {"message": "no", "type": "invalid_request_error", "code": "bad_thing"}},
                            status_code=400)

    async def boom(request):
        raise RuntimeError("bug")

    async def stream(request):
        async def events():
            yield "data: {\"a\": 1}\n\n"
            # by the time [DONE] is being sent, the line must be in the file
            yield "data: [DONE]\n\n"
            if seen is not None:
                seen.append([line["request_id"] for line in lines_of(log)])

        return StreamingResponse(events(), media_type="text/event-stream")

    async def endless(request):
        async def events():
            yield "data: {\"a\": 1}\n\n"
            if streaming is not None:
                streaming.set()
            await asyncio.Event().wait()
            yield "never"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/ok", ok, methods=["POST"]), Route("/bad", bad), Route("/boom", boom),
                            Route("/stream", stream), Route("/endless", endless)])
    app.add_middleware(RequestLogMiddleware, log=lambda: log)

    async def with_id(scope, receive, send, inner=app):
        if scope["type"] == "http":
            scope.setdefault("state", {})["request_id"] = dict(scope["headers"]).get(b"x-request-id", b"-").decode()
        await inner(scope, receive, send)

    return with_id


async def call(app, method: str, path: str, rid: str, **kw) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, headers={"x-request-id": rid}, **kw)


def test_every_outcome_is_one_line(tmp_path):
    log = make_log(tmp_path)
    app = app_with(log)

    async def run():
        assert (await call(app, "POST", "/ok", "r-ok")).status_code == 200
        assert (await call(app, "GET", "/bad", "r-bad")).status_code == 400
        assert (await call(app, "GET", "/boom", "r-boom")).status_code == 500
        assert (await call(app, "GET", "/nowhere", "r-404")).status_code == 404

    asyncio.run(run())
    log.close()
    by_id = {line["request_id"]: line for line in lines_of(log)}
    assert sorted(by_id) == ["r-404", "r-bad", "r-boom", "r-ok"]
    assert by_id["r-ok"]["status"] == 200 and by_id["r-ok"]["excerpt"] == "hello there"
    assert by_id["r-ok"]["input_chars"] == len("hello there") and by_id["r-ok"]["pii"] == {}
    assert by_id["r-bad"]["status"] == 400 and by_id["r-bad"]["error_code"] == "bad_thing"
    assert by_id["r-boom"]["status"] == 500 and by_id["r-boom"]["error_code"] == "internal_error"
    assert by_id["r-404"]["status"] == 404 and by_id["r-404"]["endpoint"] == "/nowhere"
    assert all(line["total_ms"] >= 0 and line["ts"].endswith("+00:00") for line in by_id.values())


def test_a_stream_has_its_line_before_done_leaves(tmp_path):
    log = make_log(tmp_path)
    seen: list = []
    response = asyncio.run(call(app_with(log, seen), "GET", "/stream", "r-stream"))
    assert response.text.endswith("data: [DONE]\n\n")
    assert seen == [["r-stream"]]  # read from the file while the stream was ending
    (line,) = lines_of(log)
    assert line["stream"] is True and line["status"] == 200 and line["client_gone"] is False


def test_a_client_that_leaves_mid_stream_still_gets_a_line(tmp_path):
    log = make_log(tmp_path)

    async def run():
        streaming = asyncio.Event()
        task = asyncio.create_task(call(app_with(log, streaming=streaming), "GET", "/endless", "r-gone"))
        await asyncio.wait_for(streaming.wait(), 10)
        assert not log.knows("r-gone")
        task.cancel()  # as Serve cancels a request whose client left
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    log.close()
    (line,) = lines_of(log)
    assert line["request_id"] == "r-gone" and line["client_gone"] is True and line["stream"] is True
    assert line["status"] == 200


def test_lines_are_whole_and_rotate_by_size(tmp_path):
    log = make_log(tmp_path, max_bytes=4096, backups=2)
    for n in range(60):
        record = RequestRecord(f"id-{n}", "/x", "GET", log.replica)
        log.submit(record, record.line(1.0)).result()
    log.close()
    files = log_files(log.dir)
    assert [p.name for p in files] == [f"{log.path.name}.2", f"{log.path.name}.1", log.path.name]
    assert all(p.stat().st_size <= 4096 for p in files)
    raw = b"".join(p.read_bytes() for p in files)
    assert raw.endswith(b"\n") and all(json.loads(x) for x in raw.splitlines())
    ids = [line["request_id"] for line in lines_of(log)]
    assert ids == sorted(ids, key=lambda i: int(i.split("-")[1]))  # oldest file first, in order
    assert ids[-1] == "id-59" and len(ids) < 60  # the oldest went with the third rotation


def test_a_half_written_line_is_not_read(tmp_path):
    log = make_log(tmp_path)
    record = RequestRecord("whole", "/x", "GET", log.replica)
    log.submit(record, record.line(1.0)).result()
    with open(log.path, "a") as f:
        f.write('{"request_id": "torn", "sta')
    assert [line["request_id"] for line in lines_of(log)] == ["whole"]
    assert contains(log.dir, "whole") and not contains(log.dir, "torn")


def test_select_filters(tmp_path):
    lines = [{"request_id": "a", "ts": "2026-01-01T00:00:00+00:00", "status": 200, "intent": "text"},
             {"request_id": "b", "ts": "2026-06-01T00:00:00+00:00", "status": 503, "intent": "vision"},
             {"request_id": "c", "ts": "2026-06-02T00:00:00+00:00", "status": 504, "intent": "text"}]
    assert [x["request_id"] for x in select(lines, status="5xx")] == ["b", "c"]
    assert [x["request_id"] for x in select(lines, status="503")] == ["b"]
    assert [x["request_id"] for x in select(lines, intent="text")] == ["a", "c"]
    assert [x["request_id"] for x in select(lines, since=parse_since("2026-05-01"))] == ["b", "c"]
    assert [x["request_id"] for x in select(lines, request_id="a")] == ["a"]
    assert parse_since("15m") < parse_since("1m")


def test_feedback_is_appended_durably(tmp_path):
    log = make_log(tmp_path)
    log.append_feedback({"request_id": "a", "rating": "down", "correction": {"model": "x"}})
    log.append_feedback({"request_id": "b", "rating": "up", "correction": None})
    assert [f["request_id"] for f in read_feedback(log.dir)] == ["a", "b"]
    assert oct(os.stat(log.dir / "feedback.jsonl").st_mode & 0o777) == "0o640"


def test_known_ids_are_bounded(tmp_path):
    log = make_log(tmp_path, known_ids=3)
    for n in range(5):
        record = RequestRecord(f"k{n}", "/x", "GET", log.replica)
        log.submit(record, record.line(1.0)).result()
    assert [log.knows(f"k{n}") for n in range(5)] == [False, False, True, True, True]
    assert contains(log.dir, "k0")  # still found in the files
