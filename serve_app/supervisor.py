"""`switchboard run` and `switchboard stop`: start and stop a local Switchboard cleanly.

`switchboard run CONFIG` (what `make run` execs) wraps `serve run CONFIG`:
- it refuses to start, with one line, when the HTTP port (or HAProxy's side ports) is held;
- it starts `serve run` in a session of its own, so a signal to the process group of `make run`
  reaches only make and this supervisor, which forwards one signal to `serve run` (SIGTERM: stop
  now; SIGINT: drain Serve first) instead of every Ray process getting it at once;
- `serve run` gets SIGTERM from the kernel if this supervisor dies (PR_SET_PDEATHSIG);
- it prints one line per deployment that Serve marks failed, with Serve's reason (polling the
  dashboard's REST API, which `serve status` also reads), and one line once serving;
- after `serve run` exits it stops whatever is left in that session, waits until the port is
  free and says so. Never forks inside Ray: this process is outside it.

Why: a SIGTERM delivered to every process of `make run` at once made the raylet exit abruptly (it
fate-shares with its dashboard agent, which died first); the HAProxyManager actor's worker then
quit without stopping HAProxy, which kept the port. `switchboard-haproxy` (serve_app/
haproxy_loopback.py) now ties HAProxy to its parent as well.

`switchboard stop CONFIG` (what `make stop` runs) stops a running Switchboard however it was
started: the supervisor (through its state file, or as the parent of the `serve run` that holds
the port), a `serve run` started by hand (the one whose processes hold the port, or that runs this
config), and leftovers that still hold the ports (HAProxy or Ray processes whose Ray node is gone).
It never touches a process that is not HAProxy, Ray, `serve run` or `switchboard run`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import psutil
import yaml

from serve_app import serve_status
from serve_app.haproxy_loopback import die_with_parent

PREFIX = "switchboard: "
DEFAULT_HOST = "127.0.0.1"  # Serve's defaults when the config has no http_options
DEFAULT_PORT = 8000
# How `serve run` stops. SIGTERM: at once (about 3-5 s) -- Ray's failure-signal handler aborts it and
# the processes it started go down with it (fate-sharing; HAProxy through switchboard-haproxy).
# SIGINT: gracefully -- KeyboardInterrupt, serve.shutdown() drains Serve (in high-throughput mode
# replicas stay reachable for RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S, 30 s by default),
# then Ray stops its processes in order: 30-40 s.
# The supervisor maps SIGTERM/SIGHUP/SIGQUIT (a supervisor, `kill`, `make stop`, a process-group
# kill) to SIGTERM, and SIGINT (Ctrl-C) to SIGINT; a second SIGINT, or a graceful stop that takes
# longer than INTERRUPT_GRACE_S, becomes SIGTERM; TERM_GRACE_S after SIGTERM what is left is killed.
INTERRUPT_GRACE_S = 60.0
TERM_GRACE_S = 15.0
LEFTOVER_GRACE_S = 5.0
PORT_FREE_WAIT_S = 15.0
_DASHBOARD = re.compile(r"View the dashboard at (?:\x1b\[[0-9;]*m)*(https?://[^\s\x1b]+)")


def say(line: str) -> None:
    try:
        sys.stderr.write(PREFIX + line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # nobody reads stderr any more (e.g. `make run | head`): carry on
        pass


# ---- addresses and who holds them -------------------------------------------------------------

def http_address(config_path: str | os.PathLike) -> tuple[str, int]:
    """(host, port) of the Serve config's `http_options`, with Serve's defaults."""
    with open(config_path) as f:
        data = yaml.safe_load(f) or {}
    options = data.get("http_options") or {}
    return str(options.get("host") or DEFAULT_HOST), int(options.get("port") or DEFAULT_PORT)


def side_ports(env: dict[str, str] | None = None) -> list[int]:
    """HAProxy's stats and metrics ports, when Serve's HAProxy mode is on (Serve's defaults)."""
    env = os.environ if env is None else env
    if env.get("RAY_SERVE_ENABLE_HA_PROXY", "0") != "1":
        return []
    return [int(env.get("RAY_SERVE_HAPROXY_STATS_PORT") or 8404), int(env.get("RAY_SERVE_HAPROXY_METRICS_PORT") or 9101)]


def port_in_use(host: str, port: int) -> bool:
    """Whether binding (host, port) fails because something holds it (TIME_WAIT does not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def listeners(port: int) -> list[psutil.Process]:
    """The processes listening on TCP `port` (any address)."""
    pids = set()
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                pids.add(conn.pid)
    except psutil.AccessDenied:
        pass
    found = []
    for pid in sorted(pids):
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return found


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def is_serve_run(proc: psutil.Process) -> bool:
    args = _cmdline(proc)
    for i, arg in enumerate(args[:3]):
        if os.path.basename(arg) == "serve" and args[i + 1:i + 2] == ["run"]:
            return True
    return False


def is_supervisor(proc: psutil.Process) -> bool:
    """`switchboard run ...` (the console script, run by Python) or `python -m serve_app.cli run ...`."""
    args = _cmdline(proc)
    for i, arg in enumerate(args[:3]):
        if os.path.basename(arg) == "switchboard" and args[i + 1:i + 2] == ["run"]:
            return True
        if arg == "-m" and args[i + 1:i + 3] == ["serve_app.cli", "run"]:
            return True
    return False


def is_haproxy(proc: psutil.Process) -> bool:
    args = _cmdline(proc)
    return bool(args) and os.path.basename(args[0]) in {"haproxy", "switchboard-haproxy"}


def is_ray(proc: psutil.Process) -> bool:
    args = _cmdline(proc)
    if not args:
        return False
    if args[0].startswith("ray::"):
        return True
    name = os.path.basename(args[0])
    return name in {"raylet", "gcs_server"} or any("/site-packages/ray/" in a for a in args[:3])


def serve_run_ancestor(proc: psutil.Process) -> psutil.Process | None:
    try:
        for parent in proc.parents():
            if is_serve_run(parent):
                return parent
    except psutil.NoSuchProcess:
        pass
    return None


def raylet_ancestor(proc: psutil.Process) -> psutil.Process | None:
    """The live raylet this process runs under, if any (a Ray node that is still up)."""
    try:
        for parent in proc.parents():
            args = _cmdline(parent)
            if args and os.path.basename(args[0]) == "raylet":
                return parent
    except psutil.NoSuchProcess:
        pass
    return None


def is_leftover(proc: psutil.Process) -> bool:
    """HAProxy or a Ray process whose Ray node (and `serve run`) is gone."""
    return (is_haproxy(proc) or is_ray(proc)) and serve_run_ancestor(proc) is None and raylet_ancestor(proc) is None


def display_name(proc: psutil.Process) -> str:
    args = _cmdline(proc)
    if is_haproxy(proc):
        return os.path.basename(args[0])
    if args and args[0].startswith("ray::"):
        return args[0].split()[0]
    name = proc.name()
    scripts = [a for a in args[1:3] if a.endswith(".py") or a == "-m"]
    return f"{name} {os.path.basename(scripts[0])}" if scripts and scripts[0] != "-m" else name


@dataclass
class Holder:
    process: psutil.Process | None

    def describe(self) -> str:
        proc = self.process
        if proc is None:
            return "another process (not visible to this user)"
        try:
            name, pid = display_name(proc), proc.pid
        except psutil.NoSuchProcess:
            return "a process that has just exited"
        if is_haproxy(proc) or is_ray(proc):
            owner = serve_run_ancestor(proc)
            if owner is not None:
                return f"{name} (pid {pid}) of a running `serve run` (pid {owner.pid})"
            raylet = raylet_ancestor(proc)
            if raylet is not None:
                return f"{name} (pid {pid}) of a running Ray node (raylet pid {raylet.pid}) not started by `serve run`"
            return f"{name} (pid {pid}), left over from an earlier run (its `serve run` is gone)"
        return f"{name} (pid {pid})"


def first_held(addresses: Iterable[tuple[str, int]]) -> tuple[str, int, Holder] | None:
    """The first (host, port) that something holds, with who holds it."""
    for host, port in addresses:
        if port_in_use(host, port):
            procs = listeners(port)
            return host, port, Holder(procs[0] if procs else None)
    return None


# ---- state file --------------------------------------------------------------------------------

def state_path(port: int) -> Path:
    return Path(os.environ.get("RAY_TMPDIR") or "/tmp") / f"switchboard-{port}.json"


# ---- the parent-death signal -------------------------------------------------------------------

def _die_with_supervisor() -> None:  # runs in the child between fork and exec: no imports here
    # A job started in the background inherits SIGINT ignored, and so would `serve run`: give it
    # the default back, so that Python turns a forwarded SIGINT into KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    die_with_parent(signal.SIGTERM)


# ---- processes of a session --------------------------------------------------------------------

def session_members(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return found


def exited(proc: psutil.Process) -> bool:
    """Gone, or a zombie (it has exited; its parent -- init, for an orphan -- has not reaped it yet)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_exited(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still alive after `timeout_s`."""
    wait_until(lambda: all(exited(p) for p in procs), timeout_s, interval_s=0.1)
    return [p for p in procs if not exited(p)]


def terminate(procs: list[psutil.Process], grace_s: float = LEFTOVER_GRACE_S) -> list[psutil.Process]:
    """SIGTERM, then SIGKILL what is still alive after `grace_s`; returns those that needed SIGKILL."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    alive = wait_exited(procs, grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    wait_exited(alive, grace_s)
    return alive


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


# ---- deployment status lines -------------------------------------------------------------------

class StatusReporter:
    """One line per deployment that Serve marks failed (with Serve's reason), one when it recovers,
    and one when every application is running."""

    def __init__(self, address: str, emit: Callable[[str], None] = say) -> None:
        self._address = address
        self._emit = emit
        self._reported: dict[tuple[str, str], str] = {}
        self._serving = False
        self.settled = False

    def update(self, applications: dict) -> None:
        statuses = {}
        for app_name, app in applications.items():
            for name, deployment in (app.get("deployments") or {}).items():
                statuses[(app_name, name)] = deployment
        for key, deployment in statuses.items():
            status = str(deployment.get("status"))
            was = self._reported.get(key)
            if status in serve_status.FAILED and was != status:
                why = serve_status.reason(str(deployment.get("message") or "")) or "no reason given"
                self._emit(f"deployment {key[1]} (application {key[0]}) {status}: {why}")
                self._reported[key] = status
            elif status == "HEALTHY" and was is not None:
                self._emit(f"deployment {key[1]} (application {key[0]}) recovered: HEALTHY")
                del self._reported[key]
        app_statuses = [str(app.get("status")) for app in applications.values()]
        self.settled = bool(app_statuses) and all(s in {"RUNNING", "DEPLOY_FAILED", "UNHEALTHY"} for s in app_statuses)
        running = bool(app_statuses) and all(s == "RUNNING" for s in app_statuses)
        if running and not self._serving:
            self._emit(f"serving on {self._address} ({', '.join(applications)} RUNNING)")
        self._serving = running


# ---- run ---------------------------------------------------------------------------------------

class Supervisor:
    def __init__(self, config: str, serve_args: list[str], *, out=None) -> None:
        self.config = config
        self.serve_args = serve_args
        self.host, self.port = http_address(config)
        self.out = out if out is not None else sys.stdout
        self.child: subprocess.Popen | None = None
        self.stop_requested_at: float | None = None
        self.forwarded: int | None = None  # the signal forwarded to `serve run`, once stopping
        self.dashboard: str | None = None
        self.reporter = StatusReporter(f"http://{self.host}:{self.port}")

    def addresses(self) -> list[tuple[str, int]]:
        return [(self.host, self.port), *((DEFAULT_HOST, p) for p in side_ports())]

    # signals
    def _on_signal(self, signum, _frame) -> None:
        wanted = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
        if self.forwarded == signal.SIGTERM:
            return  # already stopping at once (make, too, forwards a SIGTERM it got to its child)
        if self.forwarded == signal.SIGINT:
            if wanted == signal.SIGINT and time.monotonic() - self.stop_requested_at < 1.0:
                return  # the same Ctrl-C, delivered twice
            wanted = signal.SIGTERM  # a second Ctrl-C, or a SIGTERM during a graceful stop: stop now
        self.forwarded, self.stop_requested_at = wanted, time.monotonic()
        how = "gracefully (SIGINT; Ctrl-C again stops at once)" if wanted == signal.SIGINT else "(SIGTERM)"
        say(f"{signal.Signals(signum).name}: stopping `serve run` {how}, pid {self.child.pid if self.child else '-'}")
        self._signal_child(wanted)

    def _signal_child(self, sig: int) -> None:
        if self.child is not None and self.child.poll() is None:
            try:
                os.kill(self.child.pid, sig)
            except ProcessLookupError:
                pass

    def _install_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # e.g. SIGINT in a backgrounded job: keep ignoring it, as the shell asked
            signal.signal(sig, self._on_signal)

    # output
    def _relay(self, stream) -> None:
        sink = getattr(self.out, "buffer", None)
        for raw in iter(stream.readline, b""):
            try:
                if sink is not None:
                    sink.write(raw)
                else:
                    self.out.write(raw.decode(errors="replace"))
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass
            if self.dashboard is None:
                match = _DASHBOARD.search(raw.decode(errors="replace"))
                if match:
                    self.dashboard = match.group(1).rstrip("/")

    def _poll_status(self) -> None:
        if self.dashboard is None:
            return
        try:
            self.reporter.update(serve_status.fetch_applications(self.dashboard, timeout_s=1.0))
        except Exception:  # noqa: BLE001 - the dashboard is not up yet, or busy: try again later
            pass

    def run(self) -> int:
        held = first_held(self.addresses())
        if held is not None:
            host, port, holder = held
            say(f"cannot start: {host}:{port} is already in use by {holder.describe()}; "
                f"`make stop` (switchboard stop) clears a Switchboard or its leftovers")
            return 1
        self._install_handlers()
        serve = str(Path(sys.executable).with_name("serve"))
        self.child = subprocess.Popen(
            [serve, "run", self.config, *self.serve_args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_supervisor,
        )
        state = state_path(self.port)
        try:
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"supervisor": os.getpid(), "serve_run": self.child.pid, "host": self.host,
                                         "port": self.port, "config": os.path.abspath(self.config)}))
        except OSError:
            pass
        if self.forwarded is not None:  # a signal came while it was starting
            self._signal_child(self.forwarded)
        say(f"started `serve run {self.config}` (pid {self.child.pid}) for http://{self.host}:{self.port}")
        relay = threading.Thread(target=self._relay, args=(self.child.stdout,), daemon=True)
        relay.start()
        next_poll = time.monotonic()
        killed = False
        while self.child.poll() is None:
            now = time.monotonic()
            if self.stop_requested_at is not None:
                waited = now - self.stop_requested_at
                if self.forwarded == signal.SIGINT and waited > INTERRUPT_GRACE_S:
                    say(f"`serve run` did not stop within {INTERRUPT_GRACE_S:.0f} s of SIGINT: SIGTERM")
                    self.forwarded, self.stop_requested_at = signal.SIGTERM, now
                    self._signal_child(signal.SIGTERM)
                elif self.forwarded == signal.SIGTERM and not killed and waited > TERM_GRACE_S:
                    say(f"`serve run` did not stop within {TERM_GRACE_S:.0f} s of SIGTERM: killing its processes")
                    terminate(session_members(self.child.pid), grace_s=1.0)
                    killed = True
            elif now >= next_poll:
                self._poll_status()
                next_poll = now + (1.0 if not self.reporter.settled else 10.0)
            try:
                self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        code = self.child.returncode
        relay.join(timeout=5)
        # Ray's own stop signals its processes and returns; give them a moment to finish exiting.
        wait_until(lambda: not session_members(self.child.pid), LEFTOVER_GRACE_S)
        leftovers = session_members(self.child.pid)
        if leftovers:
            say(f"stopping {len(leftovers)} process(es) left by `serve run`: "
                + ", ".join(f"{display_name(p)} (pid {p.pid})" for p in leftovers[:10]))
            terminate(leftovers)
        free = wait_until(lambda: not port_in_use(self.host, self.port), PORT_FREE_WAIT_S)
        try:
            if json.loads(state.read_text()).get("supervisor") == os.getpid():
                state.unlink()
        except (OSError, ValueError):
            pass
        if not free:
            held = first_held([(self.host, self.port)])
            say(f"{self.host}:{self.port} is still held by {held[2].describe() if held else 'something'}; "
                f"run `make stop`")
            return 1
        if self.stop_requested_at is not None:
            say(f"stopped; {self.host}:{self.port} is free")
            return 0
        say(f"`serve run` exited with code {code}; {self.host}:{self.port} is free")
        return code if code else 0


def run(config: str, serve_args: list[str] | None = None) -> int:
    from serve_app.local_env import apply_local_env

    apply_local_env()  # the same environment as `make run` when started by hand
    return Supervisor(config, list(serve_args or [])).run()


# ---- stop --------------------------------------------------------------------------------------

def _same_config(proc: psutil.Process, config: str) -> bool:
    target = os.path.realpath(config)
    args = _cmdline(proc)
    try:
        cwd = proc.cwd()
    except psutil.Error:
        cwd = "/"
    return any(os.path.realpath(os.path.join(cwd, a)) == target for a in args[2:])


def stop_serve_run(owner: psutil.Process) -> None:
    """SIGTERM (it stops in about 3-5 s; SIGINT would drain for 30 s or more, and a backgrounded
    `serve run` ignores it), then SIGKILL for what is left of its session."""
    try:
        sid = os.getsid(owner.pid)
        say(f"stopping `serve run` (pid {owner.pid}) with SIGTERM")
        owner.terminate()
    except (ProcessLookupError, psutil.NoSuchProcess):
        return
    if wait_exited([owner], TERM_GRACE_S):
        say(f"`serve run` (pid {owner.pid}) did not stop within {TERM_GRACE_S:.0f} s: killing it")
        terminate([owner], grace_s=1.0)
    if sid == owner.pid:  # it leads its own session: whatever is left there is its
        wait_until(lambda: not session_members(sid), LEFTOVER_GRACE_S)
        rest = session_members(sid)
        if rest:
            say("stopping what it left: " + ", ".join(f"{display_name(p)} (pid {p.pid})" for p in rest[:10]))
            terminate(rest)


def stop(config: str, timeout_s: float = TERM_GRACE_S + LEFTOVER_GRACE_S + PORT_FREE_WAIT_S + 15) -> int:
    from serve_app.local_env import apply_local_env

    apply_local_env()
    host, port = http_address(config)
    addresses = [(host, port), *((DEFAULT_HOST, p) for p in side_ports())]
    ports = [p for _, p in addresses]
    acted = False

    # 1. A supervisor (make run / switchboard run) stops everything itself on SIGTERM: the one named
    # in its state file, or the parent of a `serve run` that holds our ports or runs this config.
    supervisors, owners = {}, {}
    try:
        sup = psutil.Process(int(json.loads(state_path(port).read_text())["supervisor"]))
        if is_supervisor(sup):
            supervisors[sup.pid] = sup
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    candidates = [serve_run_ancestor(proc) for p in ports for proc in listeners(p)]
    candidates += [proc for proc in psutil.process_iter() if is_serve_run(proc) and _same_config(proc, config)]
    for owner in filter(None, candidates):
        try:
            parent = owner.parent()
        except psutil.Error:
            parent = None
        if parent is not None and is_supervisor(parent):
            supervisors[parent.pid] = parent
        else:
            owners[owner.pid] = owner
    for sup in supervisors.values():
        say(f"stopping `switchboard run` (pid {sup.pid}) with SIGTERM")
        acted = True
        try:
            sup.terminate()
        except psutil.NoSuchProcess:
            continue
        if wait_exited([sup], timeout_s):  # its `serve run` gets SIGTERM from the kernel when it dies
            say(f"`switchboard run` (pid {sup.pid}) did not stop within {timeout_s:.0f} s: killing it")
            terminate([sup], grace_s=1.0)

    # 2. A `serve run` started by hand (or left by a supervisor that was killed).
    for owner in owners.values():
        if not exited(owner):
            acted = True
            stop_serve_run(owner)

    # 3. Leftovers that still hold a port: HAProxy or Ray processes whose Ray node is gone.
    others = []
    for h, p in addresses:
        if not port_in_use(h, p):
            continue
        for proc in listeners(p):
            if is_leftover(proc):
                say(f"stopping {Holder(proc).describe()} on port {p}")
                acted = True
                terminate([proc])
            else:
                others.append((p, Holder(proc)))
    for p, holder in others:
        say(f"port {p} is held by {holder.describe()}: left alone")

    free = wait_until(lambda: not port_in_use(host, port), PORT_FREE_WAIT_S if acted else 0)
    if not free:
        held = first_held([(host, port)])
        say(f"{host}:{port} is still held by {held[2].describe() if held else 'something'}")
        return 1
    say(f"stopped; {host}:{port} is free" if acted else f"nothing to stop; {host}:{port} is free")
    return 0
