"""`ivr statements import FILE.csv` (a billing cycle; see ivr.services.statements for the
columns and the balance rules) and `ivr statements list`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ivr.commands.db import run_with_db

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.services.statements import CheckReport
    from ivr.storage.db import Database


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("statements", help="import a billing cycle's statements, list them")
    ssub = p.add_subparsers(dest="action", required=True)
    imp = ssub.add_parser(
        "import", help="validate and import a statements CSV (all or nothing)",
        description="Columns: account_number, statement_id, amount, currency, "
                    "statement_date, due_date (YYYY-MM-DD). Idempotent by statement_id.")
    imp.add_argument("file", help="CSV file with a header row")
    imp.add_argument("--skip-bad", action="store_true",
                     help="import the good rows even if some rows are bad")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    imp.set_defaults(func=import_cmd)
    ls = ssub.add_parser("list", help="list statements")
    ls.add_argument("--account", metavar="N", help="only this account number's")
    ls.add_argument("--open", action="store_true", help="only open statements")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=list_cmd)


def import_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.progress import Progress
    from ivr.services import statements

    path = Path(args.file)
    try:
        size = path.stat().st_size
    except OSError as exc:
        print(f"ivr: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    checked, imported = Progress("checked"), Progress("imported")
    reports: list[CheckReport] = []

    async def body(db: Database, f: IO[str]) -> tuple[int, int] | None:
        report = await statements.check(
            db, f, size_hint=size,
            progress=lambda n, chars: checked.update(n, chars / size if size else None))
        reports.append(report)
        checked.finish(report.good + len(report.bad))
        for bad in report.bad:
            print(f"{path}:{bad.line}: {bad.reason}", file=sys.stderr)
        if (report.bad and not args.skip_bad) or args.dry_run:
            return None
        total = report.good
        res = await statements.apply(
            db, report, progress=lambda n: imported.update(n, n / total if total else None))
        imported.finish(total)
        return res

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            res = run_with_db(cfg, lambda db: body(db, f))
    except OSError as exc:
        print(f"ivr: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print(f"ivr: {path} is not UTF-8 text; save it as CSV UTF-8", file=sys.stderr)
        return 1
    finally:
        for r in reports:
            r.close()
    if not reports:
        return 1
    report = reports[0]
    if res is None:
        if not ((report.bad and not args.skip_bad) or args.dry_run):
            print("batches already written stay; rerunning the same import finishes it",
                  file=sys.stderr)
            return 1
        if report.bad and not args.skip_bad:
            print(f"{len(report.bad)} bad row(s); nothing imported. Fix them, or rerun with "
                  "--skip-bad to import the other rows.", file=sys.stderr)
            return 1
        print(f"{report.good} row(s) OK, {len(report.bad)} bad; nothing imported (dry run)")
        return 0 if not report.bad else 1
    new, unchanged = res
    skipped = f", {len(report.bad)} bad row(s) skipped" if report.bad else ""
    print(f"imported {new + unchanged} statement(s): {new} new, {unchanged} already "
          f"imported{skipped}")
    return 0


def list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.money import to_text
    from ivr.services import statements

    async def body(db: Database) -> int:
        n = 0
        async for st in statements.list_statements(db, args.account, args.open):
            n += 1
            if args.json:
                print(json.dumps({
                    "account_number": st.account_number, "statement_id": st.statement_ref,
                    "amount": to_text(st.amount_due_minor), "currency": st.currency,
                    "statement_date": st.statement_date.isoformat(),
                    "due_date": st.due_date.isoformat(), "status": st.status}))
            else:
                print(f"{st.account_number:<14} {st.statement_ref or '-':<16} "
                      f"{to_text(st.amount_due_minor):>10} {st.currency} "
                      f"{st.statement_date} due {st.due_date} {st.status}")
        return n

    n = run_with_db(cfg, body)
    if n is None:
        return 1
    if n == 0 and not args.json:
        print("no statements")
    return 0
