"""The `switchboard` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchboard", description="Switchboard tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate a Serve config file's Switchboard args")
    check.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        from serve_app.config_file import load_serve_config

        for name, config in load_serve_config(args.path).items():
            sys.stdout.write(f"{name}: {len(config.models)} models ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
