"""Reading the request log back: every line of every replica's files (rotated ones too), the
feedback, and the filters of `switchboard requests`."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from serve_app.request_log.writer import FEEDBACK_FILE, SHADOW_GLOB, log_files

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.endswith("\n"):
                    return  # a line still being written (or cut by a crash): not a line yet
                try:
                    yield json.loads(line)
                except ValueError:
                    logger.warning("unreadable request log line", extra={"path": str(path), "line": n})
    except FileNotFoundError:  # rotated away while we listed
        return


def read_lines(folder: str | Path) -> Iterator[dict[str, Any]]:
    for path in log_files(Path(folder)):
        yield from _json_lines(path)


def read_shadow(folder: str | Path) -> Iterator[dict[str, Any]]:
    """The shadow comparisons of every replica (serve_app/shadowing.py)."""
    for path in log_files(Path(folder), SHADOW_GLOB):
        yield from _json_lines(path)


def read_feedback(folder: str | Path) -> list[dict[str, Any]]:
    return list(_json_lines(Path(folder) / FEEDBACK_FILE))


def contains(folder: str | Path, request_id: str) -> bool:
    """Whether any log file has a line for `request_id` (reads the files: run it off the loop)."""
    needle = json.dumps(request_id)
    for path in log_files(Path(folder)):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if needle in line and json.loads(line).get("request_id") == request_id:
                        return True
        except (FileNotFoundError, ValueError):
            continue
    return False


def parse_since(value: str) -> datetime:
    """An ISO time, or an age such as 90s, 15m, 2h, 1d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value and value[-1] in units and value[:-1].replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(datetime.now(timezone.utc).timestamp() - float(value[:-1]) * units[value[-1]],
                                      timezone.utc)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def select(lines: Iterable[dict[str, Any]], *, request_id: str | None = None, since: datetime | None = None,
           status: str | None = None, intent: str | None = None) -> Iterator[dict[str, Any]]:
    """`status` is a code (503) or a class (5xx, 4xx)."""
    for line in lines:
        if request_id is not None and line.get("request_id") != request_id:
            continue
        if intent is not None and line.get("intent") != intent:
            continue
        if status is not None:
            code = str(line.get("status"))
            if not (code == status or (status.endswith("xx") and code[:1] == status[:1])):
                continue
        if since is not None:
            try:
                if datetime.fromisoformat(line["ts"]) < since:
                    continue
            except (KeyError, ValueError):
                continue
        yield line
