"""`ivr db upgrade|current|seed --demo`: create or migrate the database, load demo data.

Demo accounts (`ivr db seed --demo`; cards are sandbox tokens):

  Phone         Account  Name                Lang ZIP   PIN  Balance  Case
  +15551234567  100001   Alex Rivera         en   10001 1234 $84.17   Visa 4242, due in 14 days
  +15551234568  100002   Sam Lee (home)      en   94105 2468 $45.00   one number, two accounts
  +15551234568  100003   Sam Lee (business)  en   94105 2468 $120.50  Amex 0005
  +15551234569  100004   Jordan Smith        en   60601 1357 $62.30   no card on file
  +15551234570  100005   Casey Brown         en   73301 8642 $39.99   card expired 01/2023
  +15551234571  100006   Morgan Davis        en   30301 9753 $0.00    zero balance
  +15551234572  100007   Taylor Wilson       en   02101 1111 $150.25  10 days past due
  +15551234573  100008   María García        es   33101 4321 $73.40   Spanish
  +15551234574  100009   Riley Chen          en   98101 5555 $58.00   card always declined
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ivr.app import App
    from ivr.config import Config
    from ivr.storage.db import Database

T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="create/migrate the database, load demo data",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    dsub = p.add_subparsers(dest="action", required=True)
    dsub.add_parser("upgrade", help="create the database or migrate it to this version"
                    ).set_defaults(func=upgrade)
    dsub.add_parser("current", help="show the schema version of the database"
                    ).set_defaults(func=current)
    seed = dsub.add_parser("seed", help="load data (see `ivr db --help` for the demo table)")
    seed.add_argument("--demo", action="store_true", required=True,
                      help="the demo accounts listed in `ivr db --help`")
    seed.add_argument("--reset", action="store_true",
                      help="also put demo accounts already there back as seeded (balance, "
                      "PIN, ZIP, lockout, card, open statement) so the walk-through can be "
                      "done again; payments, calls and the audit log are kept, other "
                      "accounts are not touched")
    seed.set_defaults(func=seed_cmd)


def run_with_db(cfg: Config, body: Callable[[Database], Awaitable[T]],
                check: bool = True) -> T | None:
    """Run ``body`` with the Database; print storage problems as advice, return None then."""
    return run_with_app(cfg, lambda app: body(app.database()), check=check)


def run_with_app(cfg: Config, body: Callable[[App], Awaitable[T]],
                 check: bool = True) -> T | None:
    """Run ``body`` with the composition root's resources (closed after it); print storage
    problems as advice and return None then."""
    import asyncio

    from ivr.app import App
    from ivr.storage.db import StorageError, describe_failure

    async def _main() -> T:
        async with App(cfg) as app:
            if check:
                await app.database().check()
            return await body(app)

    try:
        return asyncio.run(_main())
    except StorageError as exc:
        print(f"ivr: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"ivr: {describe_failure(cfg.database.url, exc)}", file=sys.stderr)
    return None


def _quiet_alembic(args: argparse.Namespace) -> None:
    if not getattr(args, "verbose", False):  # alembic narrates each step at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)


def upgrade(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.storage.db import StorageError, describe_failure
    from ivr.storage.migrate import current as cur
    from ivr.storage.migrate import upgrade as up

    async def body(db: Database) -> str:
        try:
            await up(db.engine)
            rev, _head = await cur(db.engine)
        except (OSError, ConnectionError) as exc:
            raise StorageError(describe_failure(cfg.database.url, exc)) from None
        except Exception as exc:  # driver errors differ per database; all need a person
            raise StorageError(describe_failure(cfg.database.url, exc)) from None
        return rev or "?"

    _quiet_alembic(args)
    rev = run_with_db(cfg, body, check=False)
    if rev is None:
        return 1
    print(f"database is at schema version {rev}")
    return 0


def current(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.storage.db import StorageError, describe_failure
    from ivr.storage.migrate import current as cur

    async def body(db: Database) -> tuple[str | None, str]:
        try:
            return await cur(db.engine)
        except Exception as exc:
            raise StorageError(describe_failure(cfg.database.url, exc)) from None

    _quiet_alembic(args)
    res = run_with_db(cfg, body, check=False)
    if res is None:
        return 1
    rev, head = res
    if rev is None:
        print("database not initialised: run `ivr db upgrade`")
        return 1
    print(f"database schema {rev}; this StarPay ships {head}"
          + ("" if rev == head else ": run `ivr db upgrade`"))
    return 0 if rev == head else 1


def seed_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.services.demo import reset_demo, seed_demo

    if args.reset:
        done = run_with_db(cfg, reset_demo)
        if done is None:
            return 1
        reset, added = done
        print(f"demo accounts: {reset} reset to their seeded state, {added} added; their "
              "payments, calls and audit entries are kept, other accounts untouched")
        return 0
    res = run_with_db(cfg, seed_demo)
    if res is None:
        return 1
    created, present = res
    print(f"demo accounts: {created} added, {present} already present "
          "(see `ivr db --help` for the list; --reset puts them back as seeded)")
    return 0
