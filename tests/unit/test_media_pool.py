"""The ingress's media work runs on a bounded pool of threads, and the event loop keeps turning
while it does."""

import asyncio
import io
import threading

import numpy as np
import pytest
import soundfile

from serve_app.media.audio import decode_audio, encode_speech
from serve_app.media.pool import MediaPool


def long_mp3(seconds: float = 120, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 300 * t) * np.sin(2 * np.pi * 0.5 * t)).astype(np.float32)
    buf = io.BytesIO()
    soundfile.write(buf, tone, rate, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()


async def ticks_during(work) -> tuple[int, object]:
    """How many times a 1 ms ticker ran on the loop while `work` was awaited."""
    ticks = 0
    running = True

    async def ticker():
        nonlocal ticks
        while running:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker is waiting on its first sleep
    before = ticks
    try:
        result = await work()
        during = ticks - before
    finally:
        running = False
        await task
    return during, result


async def test_decoding_on_the_pool_leaves_the_loop_free():
    mp3 = long_mp3()
    pool = MediaPool(2)

    async def on_loop():
        return decode_audio(mp3, max_seconds=600)

    async def on_pool():
        return await pool.run(decode_audio, mp3, max_seconds=600)

    blocked, audio = await ticks_during(on_loop)
    free, pooled = await ticks_during(on_pool)
    assert blocked == 0  # the loop did nothing else while it decoded
    assert free > 0 and free > blocked  # it kept turning while the pool decoded
    assert pooled.pcm == audio.pcm and pooled.duration_s == pytest.approx(120, abs=0.1)
    pool.close()


async def test_encoding_on_the_pool_returns_what_the_function_returns():
    pool = MediaPool(1)
    pcm = (np.sin(np.arange(22050) / 10) * 8000).astype(np.int16).tobytes()
    assert await pool.run(encode_speech, pcm, 22050, "mp3") == encode_speech(pcm, 22050, "mp3")
    pool.close()


async def test_errors_come_back_to_the_caller():
    from vocabulary.errors import InvalidRequest

    pool = MediaPool(1)
    with pytest.raises(InvalidRequest):
        await pool.run(decode_audio, b"RIFF\x00\x00\x00\x00WAVEjunk", max_seconds=10)
    pool.close()


async def test_the_pool_is_bounded_and_a_cancelled_wait_leaves_no_work_behind():
    pool = MediaPool(2)
    gate = threading.Event()
    running, peak, ran = 0, 0, []
    lock = threading.Lock()

    def job(i):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(10)
        with lock:
            running -= 1
        ran.append(i)
        return i

    tasks = [asyncio.create_task(pool.run(job, i)) for i in range(6)]
    await asyncio.sleep(0.1)
    assert running == 2  # two run, four wait on the loop, not in the executor's queue
    tasks[5].cancel()  # waiting: it must never run
    gate.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 2
    assert done[:5] == [0, 1, 2, 3, 4] and isinstance(done[5], asyncio.CancelledError)
    assert sorted(ran) == [0, 1, 2, 3, 4]
    pool.close()


async def test_a_cancelled_running_job_keeps_its_slot_until_it_ends():
    pool = MediaPool(1)
    gate = threading.Event()
    order = []

    def slow():
        gate.wait(10)
        order.append("slow")

    def quick():
        order.append("quick")

    first = asyncio.create_task(pool.run(slow))
    await asyncio.sleep(0.05)
    first.cancel()  # the thread cannot stop; its slot stays taken until it ends
    second = asyncio.create_task(pool.run(quick))
    await asyncio.sleep(0.05)
    assert order == []
    gate.set()
    await second
    assert order == ["slow", "quick"]
    pool.close()
