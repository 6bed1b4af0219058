"""The ``trio-gateway`` command line (DESIGN §1)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial

import trio

from ._config import describe_config, hash_key, load_config, load_ledger_config
from ._errors import ConfigError
from ._logging import configure_logging
from ._mock import MockUpstream
from ._server import serve, serve_worker
from ._supervisor import run_workers
from ._usage_report import run_usage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trio-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    default_config = os.environ.get("TRIO_GATEWAY_CONFIG", "config.toml")
    serve_cmd = commands.add_parser("serve", help="run the gateway on hypercorn's trio worker")
    serve_cmd.add_argument("--config", default=default_config)
    # One worker process of `serve` with server.workers > 1 (started by the supervisor).
    worker = commands.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--config", default=default_config)
    worker.add_argument("--fd", type=int, required=True)
    check = commands.add_parser("check-config", help="validate a config and print a summary")
    check.add_argument("--config", default=default_config)
    mock = commands.add_parser("mock-upstream", help="run the mock LLM upstream on 127.0.0.1")
    mock.add_argument("--port", type=int, default=8081)
    mock.add_argument("--interval", type=float, default=0.02, help="seconds between events")
    usage = commands.add_parser("usage", help="the ledger: per-key summary and rows")
    usage.add_argument("--config", default=default_config)
    usage.add_argument("--key", metavar="NAME", help="only this key's rows")
    usage.add_argument("--since", metavar="ISO", help="only rows started at or after this time")
    usage.add_argument(
        "--json", action="store_true", dest="as_json", help="one JSON object per line"
    )
    keys = commands.add_parser("keys", help="key utilities")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    hash_cmd = key_commands.add_parser("hash", help="print the sha256 form of a key")
    hash_cmd.add_argument("key", nargs="?", help="the key (read from standard input if absent)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "keys":
            key = args.key if args.key is not None else sys.stdin.readline().strip()
            if not key:
                print("trio-gateway: no key given", file=sys.stderr)  # ruff: ignore[print]
                return 2
            print(hash_key(key))  # ruff: ignore[print]
            return 0
        if args.command == "mock-upstream":
            logging.basicConfig(level=logging.INFO)
            mock = MockUpstream(interval=args.interval)
            trio.run(lambda: mock.serve(host="127.0.0.1", port=args.port))
            return 0
        if args.command == "usage":
            ledger = load_ledger_config(args.config)  # no upstream secrets needed to read it
            try:
                sys.stdout.write(
                    run_usage(ledger.path, key=args.key, since=args.since, as_json=args.as_json)
                )
            except (FileNotFoundError, ValueError) as error:
                print(f"trio-gateway: {error}", file=sys.stderr)  # ruff: ignore[print]
                return 2
            return 0
        config = load_config(args.config)
        if args.command == "check-config":
            print(describe_config(config))  # ruff: ignore[print]
            return 0
        configure_logging(config.server.log_level, config.server.log_format)
        if args.command == "worker":
            trio.run(partial(serve_worker, config, fd=args.fd))
            return 0
        if config.server.workers > 1:
            return run_workers(config, config_path=args.config)
        trio.run(serve, config)
        return 0
    except ConfigError as error:
        print(f"trio-gateway: config error: {error}", file=sys.stderr)  # ruff: ignore[print]
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
