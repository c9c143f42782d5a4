"""`ivr config check|show`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check or show the configuration")
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("check", help="say what is wrong with the configuration, in plain words"
                    ).set_defaults(func=check)
    csub.add_parser("show", help="print the effective configuration (secrets hidden)"
                    ).set_defaults(func=show)


def check(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.app_hours import config_errors, config_problems  # late: it loads holidays

    problems = config_problems(cfg)
    errors = config_errors(cfg)
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
    return 0
