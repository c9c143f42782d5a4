"""The `ivr` command. Thin: parse arguments, call services, print.

Each sub-command lives in its own module under ivr/commands/ and exposes
``register(subparsers)``; they are discovered here so adding one touches no other file.
Building the parser imports every command module, so those modules import storage,
services and the like inside the functions that run the command, never at the top:
`ivr --help` and light commands then start without loading SQLAlchemy.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ivr import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr", description="StarPay: pay a bill by phone (*PAY) or by text, at any hour.")
    parser.add_argument("--version", action="version", version=f"starpay {__version__}")
    parser.add_argument("-c", "--config", help="TOML config file (default: ./starpay.toml "
                        "or $STARPAY_CONFIG when present)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ivr import config, log

    args.config_errors = []
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        # `ivr config check|show` report on what could be loaded; nothing else runs on it.
        if not getattr(args, "despite_config_errors", False) or exc.config is None:
            print(f"ivr: configuration error: {exc}", file=sys.stderr)
            print("Run `ivr config check` after fixing it.", file=sys.stderr)
            return 2
        args.config_errors, cfg = exc.errors, exc.config
    log.setup("DEBUG" if args.verbose else cfg.log.level)
    if args.command != "serve" and not args.verbose:
        # A one-shot command's output is its answer, not panoramisk's AMI link narration.
        import logging

        logging.getLogger("panoramisk").setLevel(logging.WARNING)
    from ivr.asterisk.local import apply_local_instance

    apply_local_instance(cfg)
    try:
        return int(args.func(args, cfg) or 0)
    except KeyboardInterrupt:
        return 130
