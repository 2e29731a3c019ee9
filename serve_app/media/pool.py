"""A small, bounded pool of worker threads for CPU-heavy media work in the ingress: audio decode
and resample, image checks, speech encodes. In Serve's high-throughput mode the ingress's code,
its HTTP server and its gRPC server share one event loop, so a decode on the loop stalls every
request, /api/health/live included.

Threads, never processes: a replica runs gRPC's threads, and a fork() there can leave the child
(or the replica) dead (SIGSEGV after gRPC logged "skipping fork() handlers"). PyAV, Pillow,
libsndfile and numpy release the GIL while they work, so threads do run beside the loop.

Waiting for a free worker happens on the loop (a semaphore), so a request cancelled while it
waits leaves no work queued behind it; work already running finishes (a thread cannot be
interrupted) and keeps its slot until then, so at most `workers` jobs ever run or queue."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class MediaPool:
    def __init__(self, workers: int | None = None, name: str = "media") -> None:
        self.workers = workers or default_workers()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)
        self._slots: asyncio.Semaphore | None = None  # made on first use, on the loop that uses it

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on a worker thread; its exception is raised here."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        slots = self._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = self._executor.submit(partial(fn, *args, **kwargs))
        except BaseException:
            slots.release()
            raise
        # The slot is freed when the work ends (or, if it never started, when it is cancelled).
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(slots.release))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
