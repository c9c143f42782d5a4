"""`ivr accounts import FILE.csv` and `ivr accounts export [FILE]` (see
ivr.services.account_csv for the columns)."""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.commands.db import run_with_db

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.storage.db import Database

CSV_MODULE = "ivr.services.account_csv"


def _csv_doc() -> str | None:
    """The docstring of ivr.services.account_csv (the columns), read from its source:
    importing the module would load SQLAlchemy whenever the parser is built."""
    spec = importlib.util.find_spec(CSV_MODULE)
    if spec is None or spec.origin is None:
        return None
    source = Path(spec.origin).read_text(encoding="utf-8")
    return ast.get_docstring(ast.parse(source), clean=False)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accounts", help="import or export customer accounts as CSV")
    asub = p.add_subparsers(dest="action", required=True)
    imp = asub.add_parser("import", help="validate and import a CSV (all or nothing)",
                          description=_csv_doc(),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", help="CSV file with a header row")
    imp.add_argument("--skip-bad", action="store_true",
                     help="import the good rows even if some rows are bad")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    imp.set_defaults(func=import_cmd)
    exp = asub.add_parser("export", help="write all accounts as CSV (stdout if no FILE)")
    exp.add_argument("file", nargs="?", help="output file (default: stdout)")
    exp.set_defaults(func=export_cmd)


def import_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.progress import Progress
    from ivr.services import account_csv

    path = Path(args.file)
    checked = Progress("checked")
    try:
        size = path.stat().st_size
        with path.open(newline="", encoding="utf-8-sig") as f:
            report = account_csv.check(
                f, cfg.call.default_region, size_hint=size,
                progress=lambda n, chars: checked.update(n, chars / size if size else None))
    except OSError as exc:
        print(f"ivr: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print(f"ivr: {path} is not UTF-8 text; save it as CSV UTF-8", file=sys.stderr)
        return 1
    try:
        checked.finish(report.good + len(report.bad))
        for bad in report.bad:
            print(f"{path}:{bad.line}: {bad.reason}", file=sys.stderr)
        if report.bad and not args.skip_bad:
            print(f"{len(report.bad)} bad row(s); nothing imported. Fix them, or rerun with "
                  "--skip-bad to import the other rows.", file=sys.stderr)
            return 1
        if args.dry_run:
            print(f"{report.good} row(s) OK, {len(report.bad)} bad; nothing imported "
                  "(dry run)")
            return 0 if not report.bad else 1
        imported = Progress("imported")
        total = report.good

        async def body(db: Database) -> tuple[int, int]:
            return await account_csv.apply(
                db, report, progress=lambda n: imported.update(n, n / total if total else None))

        res = run_with_db(cfg, body)
        if res is None:
            print("nothing lost: batches already written stay, and rerunning the same "
                  "import finishes it", file=sys.stderr)
            return 1
        imported.finish(total)
    finally:
        report.close()
    created, updated = res
    skipped = f", {len(report.bad)} bad row(s) skipped" if report.bad else ""
    print(f"imported {created + updated} account(s): {created} new, {updated} updated"
          f"{skipped}")
    return 0


def export_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.services import account_csv

    out = open(args.file, "w", newline="", encoding="utf-8") if args.file else sys.stdout

    async def body(db: Database) -> int:
        writer = csv.DictWriter(out, fieldnames=account_csv.COLUMNS)
        writer.writeheader()
        n = 0
        async for row in account_csv.export_rows(db):
            writer.writerow(row)
            n += 1
        return n

    try:
        n = run_with_db(cfg, body)
    finally:
        if args.file:
            out.close()
    if n is None:
        return 1
    if args.file:
        print(f"exported {n} account(s) to {args.file}", file=sys.stderr)
    return 0
