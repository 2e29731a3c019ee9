"""`switchboard run` refuses a held port with one line; `switchboard stop` clears a leftover that holds
the port; HAProxy started through `switchboard-haproxy` dies with the process that started it.
No Ray here: real processes, real sockets, the real bundled HAProxy."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from serve_app import supervisor

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s}s")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited; its new parent may not reap
    except psutil.NoSuchProcess:
        return True


def serve_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "serve.yaml"
    config.write_text(f"http_options:\n  host: 127.0.0.1\n  port: {port}\napplications: []\n")
    return config


def cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serve_app.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_http_address_reads_the_config_and_defaults_to_serves(tmp_path):
    assert supervisor.http_address(serve_config(tmp_path, 8123)) == ("127.0.0.1", 8123)
    bare = tmp_path / "bare.yaml"
    bare.write_text("applications: []\n")
    assert supervisor.http_address(bare) == ("127.0.0.1", 8000)
    assert supervisor.http_address(ROOT / "cluster" / "local.yaml") == ("127.0.0.1", 8000)


def test_run_refuses_a_held_port_with_one_line(tmp_path):
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        result = cli("run", str(serve_config(tmp_path, port)))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"switchboard: cannot start: 127.0.0.1:{port} is already in use by ")
    assert f"(pid {os.getpid()})" in lines[0] and "make stop" in lines[0]
    assert result.stdout == ""


@pytest.fixture
def fake_leftover(tmp_path):
    """A process named haproxy that listens on a port and whose starter is gone, as a leftover is."""
    port = free_port()
    code = textwrap.dedent(f"""
        import socket, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen(); time.sleep(600)
    """)
    proc = subprocess.Popen(["bash", "-c", f'exec -a haproxy {sys.executable} -c "$0"', code],
                            start_new_session=True)
    try:
        wait_for(lambda: supervisor.port_in_use("127.0.0.1", port), 10, "the fake leftover listens")
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_run_names_a_leftover_and_stop_clears_it(tmp_path, fake_leftover):
    port, proc = fake_leftover
    config = serve_config(tmp_path, port)
    refused = cli("run", str(config))
    assert refused.returncode == 1
    assert f"haproxy (pid {proc.pid}), left over from an earlier run" in refused.stderr

    stopped = cli("stop", str(config))
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopping haproxy (pid {proc.pid})" in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == f"switchboard: stopped; 127.0.0.1:{port} is free"
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert not supervisor.port_in_use("127.0.0.1", port)


def test_stop_leaves_a_stranger_alone(tmp_path):
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        result = cli("stop", str(serve_config(tmp_path, port)))
    assert result.returncode == 1
    assert f"(pid {os.getpid()}): left alone" in result.stderr


def test_stop_with_nothing_running(tmp_path):
    port = free_port()
    result = cli("stop", str(serve_config(tmp_path, port)))
    assert result.returncode == 0
    assert result.stderr.strip() == f"switchboard: nothing to stop; 127.0.0.1:{port} is free"


HAPROXY_CONFIG = """\
global
    maxconn 16
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind :{port}
    http-request return status 200 content-type text/plain string ok
"""


def test_haproxy_dies_with_the_process_that_started_it(tmp_path):
    """The wrapper Serve starts HAProxy through sets PR_SET_PDEATHSIG: when the HAProxyManager's
    worker dies without stopping it (as when the raylet goes down abruptly), HAProxy goes too."""
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port))
    starter = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "p = subprocess.Popen(sys.argv[1:])\nprint(p.pid, flush=True)\ntime.sleep(600)",
         str(BIN / "switchboard-haproxy"), "-db", "-f", str(config)],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        haproxy = int(starter.stdout.readline())
        wait_for(lambda: supervisor.port_in_use("127.0.0.1", port), 20, "haproxy listens")
        # the wrapper moved the `bind :port` onto loopback, and exec'd HAProxy under the same pid
        assert (tmp_path / "haproxy.cfg.loopback").read_text().count(f"bind 127.0.0.1:{port}") == 1
        assert os.path.basename(psutil.Process(haproxy).cmdline()[0]) == "haproxy"
        starter.kill()  # no cleanup of any kind, as when a worker quick-exits
        starter.wait(timeout=10)
        wait_for(lambda: gone(haproxy), 10, "haproxy exits with its parent")
        wait_for(lambda: not supervisor.port_in_use("127.0.0.1", port), 10, "the port is free")
    finally:
        if starter.poll() is None:
            starter.kill()
        starter.wait(timeout=10)
        if not gone(haproxy):
            os.kill(haproxy, signal.SIGKILL)
