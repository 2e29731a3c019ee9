"""A stop by process group leaves nothing bound and nothing running.

Started the way a user does, in the background: `make run` (its install step skipped with `-o
install`) in a process group of its own, on a free loopback port, with its own Ray instance
(its own RAY_TMPDIR, HAProxy side ports and dashboard port) apart from the suite's shared one.
The applications are tests/integration/stop_app.py's, not the whole roster (too heavy to start
twice on 2 cores), through the same supervisor, the same `serve run` and the same HAProxy mode
and wrapper as `make run`. Then SIGTERM to the whole process group, what a supervisor or a
careless script does: the port must come free and every process of the run must be gone.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
import psutil
import pytest

from serve_app.supervisor import is_haproxy, port_in_use
from tests.integration.conftest import free_port, wait_until
from tests.integration.stop_app import BROKEN_REASON

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
proxy_location: HeadOnly
http_options:
  host: 127.0.0.1
  port: {port}
applications:
  - name: tiny
    route_prefix: /
    import_path: tests.integration.stop_app:hello
  - name: broken
    route_prefix: /broken
    import_path: tests.integration.stop_app:broken
"""


def exited(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def of_this_run(proc: psutil.Process, ray_tmp: str) -> bool:
    """A process of this run's Ray instance: its command line or its open files name our RAY_TMPDIR."""
    try:
        if exited(proc):
            return False
        if any(ray_tmp in arg for arg in proc.cmdline()):
            return True
        return any(f.path.startswith(ray_tmp) for f in proc.open_files())
    except psutil.Error:
        return False


@pytest.fixture
def run_env(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="sb-stop-", dir="/tmp")  # short: Ray's socket paths have a limit
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "MAKEFLAGS", "MFLAGS"))}
    env.update({"RAY_TMPDIR": ray_tmp,
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())})
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_sigterm_to_the_process_group_of_make_run_leaves_nothing(tmp_path, run_env):
    port = free_port()
    config = tmp_path / "stop.yaml"
    config.write_text(CONFIG.format(port=port))
    log_path = tmp_path / "make-run.log"
    ray_tmp = run_env["RAY_TMPDIR"]
    with open(log_path, "wb") as log:
        make = subprocess.Popen(["make", "--no-print-directory", "-o", "install", "run", f"CONFIG={config}"],
                                cwd=ROOT, env=run_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started: list[psutil.Process] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/", timeout=5).text == "hello", 180, "the tiny app through HAProxy")
        failure = (f"switchboard: deployment llm-broken (application broken) DEPLOY_FAILED: "
                   f"RuntimeError: {BROKEN_REASON}")
        wait_until(lambda: failure in log_path.read_text(errors="replace").splitlines(), 120,
                   "one line naming the failed deployment and Serve's reason")

        # a second `make run` on the same port is refused with one line
        again = subprocess.run(["make", "--no-print-directory", "-o", "install", "run", f"CONFIG={config}"],
                               cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60)
        assert again.returncode != 0
        ours = [line for line in again.stderr.splitlines() if line.startswith("switchboard:")]
        assert len(ours) == 1, again.stderr
        assert ours[0].startswith(f"switchboard: cannot start: 127.0.0.1:{port} is already in use by haproxy")
        assert "of a running `serve run`" in ours[0]

        started = [psutil.Process(make.pid), *psutil.Process(make.pid).children(recursive=True)]
        haproxies = [p for p in started if is_haproxy(p)]
        assert haproxies, "HAProxy mode is on: Serve's HAProxy is part of the run"
        assert any(of_this_run(p, ray_tmp) for p in started)

        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=120)  # make waits for the supervisor, which waits for a clean stop
        assert not port_in_use("127.0.0.1", port), "the port is free once make has exited"
        wait_until(lambda: all(exited(p) for p in started), 30, "every process of the run gone")
        left = [p for p in psutil.process_iter() if of_this_run(p, ray_tmp)]
        assert not left, [(p.pid, p.cmdline()) for p in left]
        output = log_path.read_text(errors="replace")
        assert f"switchboard: stopped; 127.0.0.1:{port} is free" in output, output[-3000:]
        assert "left by `serve run`" not in output, "Ray's own SIGTERM path stopped everything"
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(timeout=30)
        for proc in started:  # only what this test started, by pid
            if not exited(proc):
                proc.kill()
