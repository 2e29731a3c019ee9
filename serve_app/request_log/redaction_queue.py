"""The request log's redaction thread: texts wait in a queue and the thread takes every one that is
waiting (up to a batch) into one `redact_many` call, so one NER pass serves many requests under
load, while a text that arrives alone is redacted at once, as before."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Sequence

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
Redaction = tuple[str, dict[str, int]]
MAX_BATCH = 32  # texts per call: the first of a batch waits for the last


class RedactionQueue:
    """`submit(text)` from any thread returns a Future of (redacted text, counts); `cut` shortens
    the redacted text (an excerpt is redacted first, then cut)."""

    def __init__(self, redact_many: Callable[[Sequence[str]], list[Redaction]], max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1: got {max_batch}")
        self._redact_many = redact_many
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread: threading.Thread | None = None  # started by the first text

    def submit(self, text: str, cut: int | None = None) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._close_lock:
            if self._closed:
                raise RuntimeError("the redaction queue is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="redaction", daemon=True)
                self._thread.start()
            self._queue.put((text, cut, future))
        return future

    def close(self) -> None:
        """Redact what is waiting, then stop the thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._thread is None:
                return
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first] if first is not None else []
            stop = first is None
            while not stop and len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._redact(batch)
            if stop:
                return

    def _redact(self, batch: list) -> None:
        live = [item for item in batch if item[2].set_running_or_notify_cancel()]
        try:
            results = self._redact_many([text for text, _, _ in live])
        except Exception:  # one text that breaks the batch must not cost the others their excerpt
            logger.exception("batch redaction failed; redacting its texts one by one", extra={"texts": len(live)})
            for item in live:
                self._redact_alone(item)
            return
        for (_, cut, future), (redacted, counts) in zip(live, results):
            future.set_result((redacted[:cut] if cut is not None else redacted, counts))

    def _redact_alone(self, item) -> None:
        text, cut, future = item
        try:
            (redacted, counts), = self._redact_many([text])
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result((redacted[:cut] if cut is not None else redacted, counts))
