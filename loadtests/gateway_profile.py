"""py-spy profiles of Switchboard's replicas under load, for loadtests/bench_gateway.py --profile:
a flame graph (SVG) of the ingress replica, and collapsed stacks of the ingress and of the upstream
model's replica, summarised as inclusive and self shares per function (file:function)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
OURS = ("serve_app/", "graphs/", "deployments/", "vocabulary/", "intent_router/")


def record(pid: int, out: Path, seconds: int, fmt: str) -> subprocess.Popen:
    return subprocess.Popen([str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                             "--nonblocking", "--format", fmt, "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def frame_name(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `path/from/project-or-package/file.py:func`."""
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{func}"


def summarise(raw: Path, top: int = 30) -> dict:
    """Inclusive share (the function anywhere on the stack) and self share (on top), of all samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";") if " (" in f]
        for name in set(frames):
            inclusive[name] += n
        if frames:
            own[frames[-1]] += n
    pct = lambda c: round(100 * c / total, 1) if total else 0.0  # noqa: E731
    wanted = [(k, pct(v)) for k, v in inclusive.most_common() if k.startswith(OURS) or pct(v) >= 5]
    return {"samples": total, "inclusive_pct": dict(wanted[:top]),
            "self_pct": {k: pct(v) for k, v in own.most_common(top)}}


def profile_under_load(pids: dict[str, int], results: Path, name: str, seconds: int, load) -> dict:
    """Record every replica in `pids` (label -> pid) while `load()` runs; the first label also gets
    results/profile-<name>.svg. Returns the summaries and what the load reported."""
    procs = []
    raws = {}
    first = next(iter(pids))
    procs.append(record(pids[first], results / f"profile-{name}.svg", seconds, "flamegraph"))
    for label, pid in pids.items():
        raws[label] = results / f"profile-{name}-{label}.txt"
        procs.append(record(pid, raws[label], seconds, "raw"))
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(load=load()))
    runner.start()
    for p in procs:
        _, err = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode()[-500:]}")
    runner.join(timeout=seconds + 60)
    return {"load": outcome.get("load"), "svg": str((results / f"profile-{name}.svg").relative_to(results.parent.parent)),
            **{label: summarise(raws[label]) for label in pids}}
