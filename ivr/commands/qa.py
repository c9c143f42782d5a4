"""`ivr qa run` (call scenarios) and `ivr qa call` (a phone in the terminal).

    ivr qa run tests/scenarios [--target emulator|asterisk|sip] [--junit FILE] [--jobs N]
    ivr qa call --from +15551234567 [--attest A] [--exten *PAY|3366] [--timeout S] [< keys]

`qa run` exits 1 when any scenario fails; a file that is not valid YAML or not a valid
scenario is reported as a failed scenario and the other files still run (2 when no path
exists, or no scenario could be run at all). `qa call`
talks to the local instance that `make run` started, and the service (`ivr serve`) must be
answering its AGI port.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qa", help="simulated calls: run scenarios, or call from the terminal")
    qsub = p.add_subparsers(dest="action", required=True)
    r = qsub.add_parser("run", help="run call scenarios (YAML files or folders)")
    r.add_argument("paths", nargs="+", metavar="PATH")
    r.add_argument("--target", choices=("emulator", "asterisk", "sip"), default="emulator",
                   help="emulator: FakeAsterisk, no PBX (default); asterisk: a real local "
                   "Asterisk (a private instance unless --instance names a running one); "
                   "sip: a real SIP phone (sipp) through that Asterisk, keys timed in "
                   "advance")
    r.add_argument("--instance", metavar="NAME", help="with --target asterisk or sip: use this "
                   "running local instance; its AGI port must be free (stop `ivr serve`)")
    r.add_argument("--junit", metavar="FILE", help="also write JUnit XML here")
    r.add_argument("--jobs", type=int, metavar="N", help="scenarios at a time (default 8 "
                   "on the emulator, 16 on asterisk, 6 on sip)")
    r.set_defaults(func=run)
    c = qsub.add_parser("call", help="place a call through the local Asterisk: prompts are "
                        "printed as they play; type keys + Enter, h + Enter hangs up")
    c.add_argument("--from", dest="caller", default="+15551234567", metavar="NUMBER",
                   help="caller ID (default +15551234567); 'withheld' for none")
    c.add_argument("--attest", choices=("A", "B", "C"), help="STIR/SHAKEN attestation")
    c.add_argument("--exten", default="*PAY", help="what the phone dials (default *PAY)")
    c.add_argument("--timeout", type=float, default=600.0, help="hang up after this many "
                   "seconds (default 600)")
    c.set_defaults(func=call)


def run(args: argparse.Namespace, cfg: Config) -> int:
    import asyncio

    from ivr.prompts.catalog import Catalog
    from ivr.qa.report import describe, summary, write_junit
    from ivr.qa.result import Result, unloadable
    from ivr.qa.runner import run_scenarios
    from ivr.qa.scenario import Scenario, ScenarioError, check_unique_names, discover, load

    try:
        files = discover(args.paths)
    except ScenarioError as exc:
        print(f"ivr qa run: {exc}", file=sys.stderr)
        return 2
    catalog = Catalog.load()
    scenarios: list[Scenario] = []
    broken: list[Result] = []
    for file in files:
        try:
            scenarios += load(file, catalog)
        except ScenarioError as exc:  # this file fails; the others still run
            broken.append(unloadable(file, str(exc), args.target))
    try:
        check_unique_names(scenarios)
    except ScenarioError as exc:
        print(f"ivr qa run: {exc}", file=sys.stderr)
        return 2
    if not scenarios and not broken:
        print("ivr qa run: no scenarios found (*.yaml / *.yml)", file=sys.stderr)
        return 2
    for result in broken:
        print(describe(result), flush=True)
    instance = None
    if args.target in ("asterisk", "sip") and args.instance:
        from ivr.asterisk.local import LocalAsterisk

        instance = LocalAsterisk(args.instance, root=cfg.asterisk.root or None)
        if not instance.running():
            print(f"ivr qa run: instance {args.instance} is not running", file=sys.stderr)
            return 2
    if not getattr(args, "verbose", False):
        # One line per scenario is the report; the service's own INFO lines (and the
        # migrations', which set their own levels) would bury it.
        logging.disable(logging.INFO)
    print(f"running {len(scenarios)} scenario(s) on {args.target}", flush=True)

    def show(result: object) -> None:
        print(describe(result), flush=True)  # type: ignore[arg-type]

    try:
        results = asyncio.run(run_scenarios(scenarios, args.target, jobs=args.jobs,
                                            instance=instance, on_result=show,
                                            config=cfg)) if scenarios else []
    except Exception as exc:  # no Asterisk, port taken, ...: say so in one line
        print(f"ivr qa run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    results = broken + results
    if args.junit:
        write_junit(results, args.junit, args.target)
    print(summary(results))
    return 0 if all(r.passed for r in results) else 1


def call(args: argparse.Namespace, cfg: Config) -> int:
    import asyncio

    from ivr.commands.asterisk import instance
    from ivr.phone import to_e164
    from ivr.qa.phone import EXTENSIONS, TerminalPhone, describe_extensions

    withheld = args.caller.lower() in ("withheld", "anonymous")
    caller = "anonymous" if withheld else to_e164(args.caller, cfg.call.default_region)
    if caller is None:
        print(f"ivr qa call: --from {args.caller!r} is not a phone number; give one in E.164 "
              f"(+15551234567) or national form ({cfg.call.default_region}: 555 123 4567), "
              "or 'withheld'", file=sys.stderr)
        return 2
    if args.exten.upper() not in EXTENSIONS:
        print(f"ivr qa call: --exten {args.exten!r} is no extension of the [starpay] "
              f"dialplan; there are {describe_extensions()}", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("ivr qa call: --timeout is a number of seconds above 0", file=sys.stderr)
        return 2
    try:
        a = instance(cfg)
    except Exception as exc:
        print(f"ivr qa call: {exc}", file=sys.stderr)
        return 2
    if not a.running():
        print(f"ivr qa call: the local Asterisk (instance {a.name}) is not running; start it "
              "with `make run` or `ivr asterisk start`, and `ivr serve`", file=sys.stderr)
        return 2
    phone = TerminalPhone(a.ami_host, a.ami_port, a.qa_username, a.qa_secret,
                          caller=caller, attest=args.attest, exten=args.exten.upper())
    try:
        return asyncio.run(phone.run(timeout=args.timeout))
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:  # the call could not be placed: the message says why
        print(f"ivr qa call: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"ivr qa call: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
