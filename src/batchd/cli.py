"""The `batchd` command."""

from __future__ import annotations

import argparse
import sys

from batchd.config import DEFAULT_PORT, ConfigError, load_settings
from batchd.store.db import StoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchd", description="A self-hostable AWS Batch-compatible job service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server, scheduler and local executor")
    serve.add_argument("--host", help="address to bind (BATCHD_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port, 0 = any free port (BATCHD_PORT; default {DEFAULT_PORT})")
    serve.add_argument("--data-dir", dest="data_dir", help="state directory (BATCHD_DATA_DIR; default ./.batchd)")
    serve.add_argument("--db", help="database URL, e.g. postgresql+psycopg://... (BATCHD_DB; default SQLite)")
    serve.add_argument("--config", help="TOML config file (BATCHD_CONFIG)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        flags = {k: v for k, v in vars(args).items() if k != "command"}
        try:
            settings = load_settings(flags)
        except ConfigError as exc:
            print(f"batchd: {exc}", file=sys.stderr)
            return 2
        from batchd.server import run

        try:
            return run(settings)
        except StoreError as exc:
            print(f"batchd: {exc}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
