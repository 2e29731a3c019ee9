"""Environment shared by every test layer; set before Ray is imported anywhere."""

import os
import socket
import sys


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


for key, value in {
    "RAY_AUTH_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_TMPDIR": "/tmp/switchboard-ray-tests",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_HAPROXY_BINARY_PATH": os.path.join(os.path.dirname(sys.executable), "switchboard-haproxy"),
    # HAProxy's side ports on free ones, so tests run beside a `make run`.
    "RAY_SERVE_HAPROXY_STATS_PORT": _free_port(),
    "RAY_SERVE_HAPROXY_METRICS_PORT": _free_port(),
}.items():
    os.environ.setdefault(key, value)
