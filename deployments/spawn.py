"""Run a command-line engine (tesseract, espeak-ng) from a replica without fork().

A replica runs gRPC's threads. fork() in such a process runs every library's at-fork handlers
and copies a multi-threaded address space: gRPC logs "skipping fork() handlers" and the replica
died with SIGSEGV. os.posix_spawn (glibc: clone(CLONE_VM | CLONE_VFORK), then exec) runs no
at-fork handler and copies nothing; the child only execs. Python's subprocess and asyncio's
create_subprocess_exec may fork, depending on their arguments, so engines use this instead.

Input and output go through files in a private temporary folder (no pipes to pump). The exit is
awaited on the event loop through a pidfd (no thread blocked in waitpid); a cancelled call kills
the child and reaps it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

POLL_S = 0.01  # only where pidfd_open is missing (Linux before 5.3)


async def spawn_and_wait(argv: Sequence[str], *, stdin: Path | None = None, stdout: Path | None = None,
                         stderr: Path | None = None, env: Mapping[str, str] | None = None) -> int:
    """Start `argv` (argv[0] an absolute path) with posix_spawn, its standard streams from and to
    the given files (else /dev/null), and return its exit code (negative: killed by that signal)."""
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 0, str(stdin or os.devnull), os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(stdout or os.devnull), write, 0o600),
               (os.POSIX_SPAWN_OPEN, 2, str(stderr or os.devnull), write, 0o600)]
    environ = dict(os.environ if env is None else env)
    # posix_spawn returns once the child has exec'd (about a millisecond): fine on the loop.
    pid = os.posix_spawn(argv[0], list(argv), environ, file_actions=actions,  # noqa: ASYNC221
                         setsigdef=(signal.SIGPIPE,))
    reaped = False
    try:
        status = await _reap(pid)
        reaped = True
        return os.waitstatus_to_exitcode(status)
    finally:
        if not reaped:  # cancelled (or the wait failed): never leave the child running, nor a zombie
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)  # noqa: ASYNC222 (SIGKILLed: returns at once)
            except (ProcessLookupError, ChildProcessError):
                pass


async def _reap(pid: int) -> int:
    """Wait for the child to exit without blocking the loop; reap it and return its wait status."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while True:
            reaped, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (never blocks)
            if reaped:
                return status
            await asyncio.sleep(POLL_S)
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return os.waitpid(pid, 0)[1]  # noqa: ASYNC222 (it has exited)
