"""`ivr config check|show`.

Both run even when the configuration does not load (the CLI hands them the config as far as
it was built and the load errors in ``args.config_errors``), so an admin sees every problem
and the rest of the effective values at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("check", help="say what is wrong with the configuration, in plain words"
                    ).set_defaults(func=check, despite_config_errors=True)
    csub.add_parser("show", help="print the effective configuration (secrets hidden)"
                    ).set_defaults(func=show, despite_config_errors=True)


def check(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.app_hours import config_errors, config_problems  # late: it loads holidays

    load_errors: list[str] = getattr(args, "config_errors", [])
    problems = load_errors + config_problems(cfg)
    errors = load_errors + config_errors(cfg)
    print(f"configuration from: {cfg.source}")
    for p in problems:
        print(("  " if p.startswith("note:") else "  error: ") + p)
    if errors:
        print(f"{len(errors)} error(s): fix them in {cfg.source} or with STARPAY_* variables.")
        return 1
    print("configuration OK")
    return 0


def show(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.config import as_dict

    print(json.dumps(as_dict(cfg), indent=2))
    load_errors: list[str] = getattr(args, "config_errors", [])
    if load_errors:
        print(f"ivr: {len(load_errors)} configuration error(s); the values above leave "
              "them out:", file=sys.stderr)
        for e in load_errors:
            print(f"  error: {e}", file=sys.stderr)
        return 1
    return 0
