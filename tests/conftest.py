"""Environment shared by every test layer; set before Ray is imported anywhere."""

import socket
import tempfile

from serve_app.local_env import apply_local_env


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


apply_local_env({
    # One folder per test run, so runs side by side (or a `make run`) keep apart.
    "RAY_TMPDIR": tempfile.mkdtemp(prefix="sb-ray-test-"),
    # Replicas stay reachable 30 s after they are told to stop; tests redeploy often.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    # HAProxy's side ports on free ones, so tests run beside a `make run`.
    "RAY_SERVE_HAPROXY_STATS_PORT": _free_port(),
    "RAY_SERVE_HAPROXY_METRICS_PORT": _free_port(),
})


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (they kill or retrain parts of the shared app) run last, so the tests before
    them see the app as it started."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
