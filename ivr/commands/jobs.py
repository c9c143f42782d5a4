"""`ivr jobs list|show|retry|cancel`: the durable background jobs, for an operator."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ivr.commands.db import run_with_db

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.jobs.queue import JobView
    from ivr.storage.db import Database

# ivr.storage.jobs.JOB_STATES (tests/integration/test_jobs.py keeps them equal): the models
# load SQLAlchemy, which `ivr --help` has no use for.
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("jobs", help="background jobs: reconcile passes, callbacks; see and "
                       "retry failed ones")
    jsub = p.add_subparsers(dest="action", required=True)
    ls = jsub.add_parser("list", help="jobs, newest first")
    ls.add_argument("--state", choices=JOB_STATES)
    ls.add_argument("--kind", help="only this kind, e.g. callbacks.place")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=list_cmd)
    for name, helptext, func in (
            ("show", "one job, with its payload and last error", show_cmd),
            ("retry", "run a failed or cancelled job again now", retry_cmd),
            ("cancel", "a queued or failed job will not run", cancel_cmd)):
        c = jsub.add_parser(name, help=helptext)
        c.add_argument("id", type=int)
        c.set_defaults(func=func)


def _as_dict(j: JobView) -> dict[str, object]:
    return {"id": j.id, "kind": j.kind, "state": j.state, "run_at": j.run_at.isoformat(),
            "attempts": j.attempts, "max_attempts": j.max_attempts, "payload": j.payload,
            "lease_owner": j.lease_owner,
            "lease_expires": j.lease_expires.isoformat() if j.lease_expires else None,
            "last_error": j.last_error, "dedupe_key": j.dedupe_key,
            "created_at": j.created_at.isoformat(),
            "finished_at": j.finished_at.isoformat() if j.finished_at else None}


def list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.jobs import queue

    async def body(db: Database) -> tuple[list[JobView], dict[str, int]]:
        return (await queue.list_jobs(db, state=args.state, kind=args.kind,
                                      limit=args.limit), await queue.counts(db))

    res = run_with_db(cfg, body)
    if res is None:
        return 1
    rows, counts = res
    if args.json:
        for j in rows:
            print(json.dumps(_as_dict(j)))
        return 0
    print("jobs: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    if not rows:
        return 0
    print(f"{'id':>7}  {'kind':<20} {'state':<9} {'tries':>5}  {'run at (UTC)':<19}  last error")
    for j in rows:
        error = (j.last_error or "").splitlines()[0][:60] if j.last_error else ""
        print(f"{j.id:>7}  {j.kind:<20} {j.state:<9} {j.attempts:>2}/{j.max_attempts:<2}  "
              f"{j.run_at:%Y-%m-%d %H:%M:%S}  {error}")
    return 0


def show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.jobs import queue

    job = run_with_db(cfg, lambda db: queue.get(db, args.id))
    if job is None:
        print(f"ivr jobs: there is no job {args.id} (see `ivr jobs list`)", file=sys.stderr)
        return 1
    for key, value in _as_dict(job).items():
        print(f"{key:>14}: {json.dumps(value) if key == 'payload' else value}")
    return 0


def _change(args: argparse.Namespace, cfg: Config, what: str) -> int:
    from ivr.jobs import queue

    async def body(db: Database) -> JobView | str:
        try:
            if what == "retry":
                return await queue.retry_now(db, args.id)
            return await queue.cancel(db, args.id)
        except queue.JobStateError as exc:
            return str(exc)

    res = run_with_db(cfg, body)
    if res is None:
        return 1
    if isinstance(res, str):
        print(f"ivr jobs {what}: {res}", file=sys.stderr)
        return 1
    print(f"job {res.id} ({res.kind}) is now {res.state}"
          + (": a running `ivr serve` picks it up within a second" if what == "retry" else ""))
    return 0


def retry_cmd(args: argparse.Namespace, cfg: Config) -> int:
    return _change(args, cfg, "retry")


def cancel_cmd(args: argparse.Namespace, cfg: Config) -> int:
    return _change(args, cfg, "cancel")
