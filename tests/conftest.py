"""Environment shared by every test layer; set before Ray is imported anywhere."""

import os
import sys

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
}.items():
    os.environ.setdefault(key, value)
