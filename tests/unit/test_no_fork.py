"""No replica forks. Command-line engines (tesseract, espeak-ng) start with posix_spawn, which runs
no at-fork handler (a fork beside gRPC's threads killed a replica with SIGSEGV)."""

import ast
import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from deployments.spawn import spawn_and_wait

ROOT = Path(__file__).resolve().parents[2]
# What forks, or may: subprocess (fork or vfork, by its arguments), os.fork/forkpty/system/popen,
# multiprocessing and process pools, asyncio's subprocesses, and pytesseract (subprocess inside).
FORKING_MODULES = {"subprocess", "multiprocessing", "pytesseract", "pty"}
FORKING_CALLS = {"fork", "forkpty", "system", "popen", "create_subprocess_exec", "create_subprocess_shell",
                 "ProcessPoolExecutor"}
# Command-line tools that run outside Ray, never in a replica: `switchboard` and its supervisor.
OUTSIDE_RAY = {"serve_app/cli.py", "serve_app/supervisor.py"}


def forks_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORKING_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORKING_MODULES:
            found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr in FORKING_CALLS:
            found.append(node.attr)
        elif isinstance(node, ast.Name) and node.id in FORKING_CALLS:
            found.append(node.id)
    return found


@pytest.mark.parametrize("package", ["deployments", "serve_app", "graphs", "vocabulary", "intent_router"])
def test_nothing_that_runs_in_a_replica_forks(package):
    files = [p for p in sorted((ROOT / package).rglob("*.py")) if str(p.relative_to(ROOT)) not in OUTSIDE_RAY]
    offenders = {str(p.relative_to(ROOT)): found for p in files if (found := forks_in(p))}
    assert offenders == {}


def test_the_scan_sees_what_it_looks_for(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("import subprocess\nimport asyncio\nasync def f():\n"
                      "    await asyncio.create_subprocess_exec('x')\n")
    assert forks_in(sample) == ["subprocess", "create_subprocess_exec"]


async def test_spawn_runs_a_command_with_files_for_its_streams(tmp_path):
    (tmp_path / "in").write_text("hello")
    code = await spawn_and_wait([shutil.which("cat")], stdin=tmp_path / "in", stdout=tmp_path / "out")
    assert code == 0 and (tmp_path / "out").read_text() == "hello"
    assert await spawn_and_wait([shutil.which("false")]) == 1


async def test_a_cancelled_spawn_kills_and_reaps_its_child(tmp_path):
    pidfile = tmp_path / "pid"
    task = asyncio.create_task(spawn_and_wait(["/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]))
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    pid = int(pidfile.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):  # killed and reaped: not even a zombie is left
        os.kill(pid, 0)


async def test_the_loop_turns_while_a_command_runs():
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await spawn_and_wait(["/bin/sleep", "0.3"])
    task.cancel()
    assert ticks > 0
