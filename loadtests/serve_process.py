"""Start and stop a `serve run` of a Switchboard config as a subprocess, for benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

sys.path.insert(0, str(ROOT))
from serve_app.local_env import local_env  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeRun:
    """`serve run` of `config_path` on a free loopback port; `fast` picks Serve's HAProxy mode."""

    def __init__(self, config_path: str | Path, *, fast: bool, args_patch=None,
                 allowed_down: tuple[str, ...] = ("web",)) -> None:
        self.allowed_down = set(allowed_down)
        self.port = free_port()
        self.fast = fast
        with open(config_path) as f:
            config = yaml.safe_load(f)
        config["http_options"] = {"host": "127.0.0.1", "port": self.port}
        if args_patch:
            args_patch(config["applications"][0]["args"])
        self._dir = tempfile.mkdtemp(prefix="switchboard-bench-")
        self.config_file = Path(self._dir) / "serve.yaml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        flag = "1" if self.fast else "0"
        return {**os.environ, **local_env(), "RAY_TMPDIR": f"{self._dir}/ray",
                "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
                "RAY_SERVE_THROUGHPUT_OPTIMIZED": flag, "RAY_SERVE_ENABLE_HA_PROXY": flag,
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}

    def start(self, timeout_s: float = 300) -> float:
        """Start and wait until every model but `allowed_down` (web search: benchmarks stay on
        loopback) passes /api/health; return the seconds it took."""
        started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "serve"), "run", str(self.config_file)], cwd=ROOT,
                                     env=self.env(), stdout=subprocess.DEVNULL,
                                     stderr=open(Path(self._dir) / "serve.log", "w"))
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve run exited with {self.proc.returncode}; see {self._dir}/serve.log")
            try:
                r = httpx.get(f"{self.url}/api/health", timeout=10)
                down = {n for n, m in r.json()["models"].items() if m["status"] != "ok"}
                if r.status_code == 200 and down <= self.allowed_down:
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"not healthy after {timeout_s}s; see {self._dir}/serve.log")

    def memory_mib(self) -> float:
        """Summed RSS of `serve run` and every process under it (Ray's GCS, raylet, workers, HAProxy)."""
        root = psutil.Process(self.proc.pid)
        procs = [root, *root.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return round(total / 2**20, 1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a backgrounded `serve run` ignores SIGINT
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for p in psutil.Process(self.proc.pid).children(recursive=True):
                    p.kill()
                self.proc.kill()
