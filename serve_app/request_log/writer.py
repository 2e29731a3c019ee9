"""The request log's files: one per ingress replica, one line per request, each line one write(2)
(so a killed replica leaves whole lines only), rotated by size. Lines are redacted and written on
threads of their own, never on the event loop (the texts waiting for redaction go through it in one
batch). Feedback goes to feedback.jsonl beside them, and shadow comparisons (serve_app/shadowing.py)
to shadow-<replica>.jsonl."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from serve_app.request_log.pii_patterns import scrub_secrets
from serve_app.request_log.record import RequestRecord
from serve_app.request_log.redaction_queue import RedactionQueue
from vocabulary.paths import config_path
from vocabulary.request_log_config import RequestLogSpec

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
FEEDBACK_FILE = "feedback.jsonl"
LOG_GLOB = "requests-*.jsonl*"
SHADOW_GLOB = "shadow-*.jsonl*"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class RotatingFile:
    """An append-only file of lines, each one write(2), rotated by size into .1, .2, ... (used from one
    thread: the log's writer)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._fd: int | None = None
        self._size = 0

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if self._fd is None:
            self.open()
        elif self._size + len(data) > self.max_bytes and self._size:
            self._rotate()
        os.write(self._fd, data)  # one write: a line is in the file whole, or not at all
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = None
        if self.backups:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self.open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RequestLog:
    def __init__(self, spec: RequestLogSpec, replica: str) -> None:
        self.spec = spec
        self.dir = config_path(spec.dir)
        self.replica = _UNSAFE.sub("_", replica)[:100] or "replica"
        self.path = self.dir / f"requests-{self.replica}.jsonl"
        self._file = RotatingFile(self.path, spec.max_bytes, spec.backups)
        self._shadow = RotatingFile(self.dir / f"shadow-{self.replica}.jsonl", spec.max_bytes, spec.backups)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="request-log")
        self._redaction = RedactionQueue(self._redact_many)
        self._redactor = None
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_lock = threading.Lock()
        self._feedback_lock = threading.Lock()

    def start(self) -> None:
        """Open the file and load the redactor (slow: call it off the event loop)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._file.open()
        if self.spec.redact == "presidio":
            from serve_app.request_log.redaction import Redactor

            redactor = Redactor("presidio")
            redactor.load()
            self._redactor = redactor

    # ---- the event loop's side: cheap ----------------------------------------------------------

    def redact_later(self, record: RequestRecord, text: str | None) -> None:
        """Start redacting the user's text as soon as it is known, while the models work."""
        if not text or not self.spec.excerpt_chars:
            return
        record.text = text
        # redacted first, then cut: a cut never leaves half an e-mail or card number to read
        record.redaction = self._redaction.submit(text[: self.spec.excerpt_chars * 4], cut=self.spec.excerpt_chars)

    def submit(self, record: RequestRecord, line: dict[str, Any]) -> concurrent.futures.Future:
        """Write the line on the writer thread once the text's redaction is done; the future ends
        when the line is in the file (or failed to be: logged, never raised at the caller)."""
        self._remember(record.request_id)
        return self._writer.submit(self._finish_and_write, line, record.redaction)

    def knows(self, request_id: str) -> bool:
        with self._known_lock:
            return request_id in self._known

    # ---- the threads' side ---------------------------------------------------------------------

    def _redact_many(self, texts: list[str]) -> list[tuple[str, dict[str, int]]]:
        """Personal data and secrets replaced by their type (with redaction off, secrets still are)."""
        if self._redactor is None:
            return [(scrub_secrets(text), {}) for text in texts]
        return self._redactor.redact_many(texts)

    def _finish_and_write(self, line: dict[str, Any], redaction) -> None:
        try:
            excerpt, pii = redaction.result() if redaction is not None else (None, {})
        except Exception as exc:  # a redaction that fails keeps nothing of the text
            logger.error("redaction failed; the excerpt is dropped", extra={
                "request_id": line.get("request_id"), "error": f"{type(exc).__name__}: {exc}"[:300]})
            excerpt, pii = None, {"REDACTION_FAILED": 1}
        line["excerpt"], line["pii"] = excerpt, pii
        self._append(self._file, line)

    def append_shadow(self, entry: dict[str, Any]) -> concurrent.futures.Future:
        """A shadow comparison (no text in it: sizes, timings and similarity), on the writer thread."""
        return self._writer.submit(self._append, self._shadow, entry)

    @staticmethod
    def _append(file: RotatingFile, line: dict[str, Any]) -> None:
        try:
            file.write(json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":")) + "\n")
        except Exception as exc:
            logger.error("log line not written", extra={
                "request_id": line.get("request_id"), "path": str(file.path),
                "error": f"{type(exc).__name__}: {exc}"[:300]})

    def _remember(self, request_id: str) -> None:
        if not self.spec.known_ids:
            return
        with self._known_lock:
            self._known[request_id] = None
            while len(self._known) > self.spec.known_ids:
                self._known.popitem(last=False)

    # ---- feedback --------------------------------------------------------------------------------

    def redact_now(self, text: str) -> tuple[str, dict[str, int]]:
        """For feedback comments (run it off the event loop)."""
        return self._redaction.submit(text).result()

    def append_feedback(self, entry: dict[str, Any]) -> None:
        """Durable: appended in one write and fsynced before the client hears it was stored."""
        data = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")
        with self._feedback_lock:
            fd = os.open(self.dir / FEEDBACK_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._redaction.close()
        self._writer.shutdown(wait=True)
        self._file.close()
        self._shadow.close()


def log_files(folder: Path, pattern: str = LOG_GLOB) -> list[Path]:
    """Every log file of `folder` (request lines, or `pattern`'s), oldest rotation first."""
    def age(path: Path) -> tuple[str, int]:
        suffix = path.name.rsplit(".jsonl", 1)[1].lstrip(".")
        return path.name.split(".jsonl")[0], -int(suffix) if suffix.isdigit() else 0

    return sorted((p for p in folder.glob(pattern) if p.is_file()), key=age)
