"""A request's line in the test app's request log."""

from serve_app.request_log.reader import read_lines
from tests.integration.conftest import wait_until


def lines_for(log_dir, request_id: str) -> list[dict]:
    return [line for line in read_lines(log_dir) if line["request_id"] == request_id]


def the_line(log_dir, request_id: str) -> dict:
    """The one line of a request (the line is written before its answer's last bytes leave, so it
    is there when the client has the answer; waiting only covers a client that left early)."""
    lines = wait_until(lambda: lines_for(log_dir, request_id), 30, f"log line of {request_id}")
    assert len(lines) == 1, lines
    return lines[0]
