"""The `batchd` command."""

from __future__ import annotations

import argparse
import sys

from batchd import __version__
from batchd.config import DEFAULT_PORT, LOG_LEVELS, ConfigError, load_settings
from batchd.store.db import StoreError

LOCAL_SERVER = f"http://127.0.0.1:{DEFAULT_PORT}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchd", description="A self-hostable AWS Batch-compatible job service")
    parser.add_argument("--version", action="version", version=f"batchd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API server, scheduler and local executor")
    serve.add_argument("--host", help="address to bind (BATCHD_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port, 0 = any free port (BATCHD_PORT; default {DEFAULT_PORT})")
    serve.add_argument("--data-dir", dest="data_dir", help="state directory (BATCHD_DATA_DIR; default ./.batchd)")
    serve.add_argument("--db", help="database URL, e.g. postgresql+psycopg://... (BATCHD_DB; default SQLite)")
    serve.add_argument("--config", help="TOML config file (BATCHD_CONFIG)")
    serve.add_argument("--server-id", dest="server_id", help="this server's id when several share a database")
    serve.add_argument("--compute-environments", dest="compute_environments",
                       help="comma-separated compute environment names whose jobs this server runs (default *)")
    serve.add_argument("--log-level", dest="log_level", type=str.lower, choices=LOG_LEVELS,
                       help="info shows each job state change and refused request (BATCHD_LOG_LEVEL; default info)")
    events = sub.add_parser("events", help="print the activity log (job state changes) as JSON lines")
    events.add_argument("--endpoint-url", dest="endpoint_url",
                        help=f"server URL (AWS_ENDPOINT_URL_BATCH, AWS_ENDPOINT_URL; default {LOCAL_SERVER})")
    events.add_argument("--region", help="region (AWS_REGION / AWS_DEFAULT_REGION; default us-east-1)")
    events.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    events.add_argument("--job-id", dest="job_id", help="only this job's events")
    events.add_argument("--follow", action="store_true", help="keep waiting for new events")
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
    if args.command == "events":
        from batchd.events_cli import run as run_events

        return run_events(args.endpoint_url, args.region, args.after, args.job_id, args.follow, LOCAL_SERVER)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
