"""The figures of a Locust run, from its CSV files (`--csv PREFIX`), into one JSON file and a printed table.

    .venv/bin/python loadtests/load_summary.py loadtests/results/locust --out loadtests/results/load.json

Reads PREFIX_load.json (the load as the locustfile wrote it at start-up: user classes, peak users, the
shape's stages, wait times), PREFIX_stats.csv (requests, failures, RPS, p50/p95/p99 per route and in total), PREFIX_failures.csv
(failures by cause; loadtests/locustfile.py names a degraded answer "degraded answer ...", so the degraded
share is counted from it) and PREFIX_stats_history.csv (users over time: the peak, and the run's duration).
Standard library only; no Locust import.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

DEGRADED_MARK = "degraded answer"
TOTAL_ROW = "Aggregated"


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # "N/A" when a route had no request
        return None


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _figures(row: dict[str, str], degraded: int) -> dict[str, float | int | None]:
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return {
        "requests": requests,
        "failures": failures,
        "failure_share": round(failures / requests, 4) if requests else 0.0,
        "degraded": degraded,
        "degraded_share": round(degraded / requests, 4) if requests else 0.0,
        "rps": round(_number(row["Requests/s"]) or 0.0, 3),
        "p50_ms": _number(row["50%"]),
        "p95_ms": _number(row["95%"]),
        "p99_ms": _number(row["99%"]),
        "avg_ms": round(_number(row["Average Response Time"]) or 0.0, 1),
        "max_ms": round(_number(row["Max Response Time"]) or 0.0, 1),
    }


def summarize(prefix: str | Path) -> dict:
    """The summary of the run whose CSV files start with `prefix`."""
    prefix = Path(prefix)
    stats = _rows(prefix.with_name(prefix.name + "_stats.csv"))
    if not stats:
        raise FileNotFoundError(f"no Locust stats at {prefix}_stats.csv")
    failures = _rows(prefix.with_name(prefix.name + "_failures.csv"))
    history = _rows(prefix.with_name(prefix.name + "_stats_history.csv"))
    load_file = prefix.with_name(prefix.name + "_load.json")  # written by the locustfile at start-up
    load = json.loads(load_file.read_text()) if load_file.is_file() else None

    degraded: dict[str, int] = {}
    for row in failures:
        if DEGRADED_MARK in row["Error"]:
            degraded[row["Name"]] = degraded.get(row["Name"], 0) + int(row["Occurrences"])

    routes = {row["Name"]: _figures(row, degraded.get(row["Name"], 0)) for row in stats if row["Name"] != TOTAL_ROW}
    total_row = next((row for row in stats if row["Name"] == TOTAL_ROW), None)
    if total_row is None:
        raise ValueError(f"no {TOTAL_ROW} row in {prefix}_stats.csv")

    times = [int(row["Timestamp"]) for row in history if row.get("Timestamp", "").isdigit()]
    users = [int(row["User Count"]) for row in history if row.get("User Count", "").isdigit()]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scenario": ",".join(load["user_classes"]) if load else None,
        "load": load,
        "started": datetime.fromtimestamp(min(times), timezone.utc).isoformat(timespec="seconds") if times else None,
        "duration_s": max(times) - min(times) if times else None,
        "peak_users": max(users) if users else None,
        "total": _figures(total_row, sum(degraded.values())),
        "routes": routes,
        "failures": [{"route": row["Name"], "error": row["Error"], "occurrences": int(row["Occurrences"])}
                     for row in failures],
    }


def _shape(load: dict) -> str:
    return (f"ramp up {load['ramp_up_s']:g} s, hold {load['hold_s']:g} s, ramp down {load['ramp_down_s']:g} s; "
            f"wait {load['wait_s'][0]:g}-{load['wait_s'][1]:g} s")


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def report(summary: dict) -> str:
    lines = [f"{summary['scenario'] or 'Locust run'}: peak {summary['peak_users']} users, "
             f"{summary['duration_s']} s, started {summary['started']}" +
             (f" (shape {_shape(summary['load'])})" if summary.get("load") else ""),
             f"{'route':<15}{'requests':>9}{'failures':>9}{'degraded':>9}{'RPS':>8}"
             f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"]
    for name, f in [*summary["routes"].items(), ("total", summary["total"])]:
        lines.append(f"{name:<15}{f['requests']:>9}{f['failures']:>9}{f['degraded']:>9}{f['rps']:>8.2f}"
                     f"{_ms(f['p50_ms']):>9}{_ms(f['p95_ms']):>9}{_ms(f['p99_ms']):>9}")
    for failure in summary["failures"]:
        lines.append(f"failure: {failure['route']}: {failure['error']} x{failure['occurrences']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="the --csv prefix of the Locust run (e.g. loadtests/results/locust)")
    parser.add_argument("--out", help="write the summary JSON here")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.prefix)
    except (FileNotFoundError, ValueError) as exc:
        print(f"load_summary: {exc}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(report(summary))
    if args.out:
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
