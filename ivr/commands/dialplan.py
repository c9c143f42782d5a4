"""`ivr dialplan check|install|uninstall|reload`: StarPay's dialplan on an Asterisk you run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config

FREEPBX_HELP = """\
FreePBX: the #include goes into extensions_custom.conf, and extensions_starpay_freepbx.conf
adds `include => starpay` to [from-internal-custom] (which from-internal includes), so
internal phones reach *PAY. Register *PAY under Admin > Custom Extensions so the GUI never
hands that code to something else. Inbound trunks: point the DID's destination at a custom
destination `starpay,*PAY,1`."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dialplan", help="check, install, uninstall or reload the dialplan")
    dsub = p.add_subparsers(dest="action", required=True)
    c = dsub.add_parser("check", help="find problems in the dialplan, with file:line")
    # No default here: it is our asterisk-config/, filled in by check(), as register() would
    # otherwise import the installer whenever the parser is built.
    c.add_argument("dir", nargs="?",
                   help="Asterisk config directory (default: our asterisk-config/)")
    c.set_defaults(func=check)
    i = dsub.add_parser("install", help="add StarPay to an Asterisk config directory",
                        epilog=FREEPBX_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("--to", required=True, metavar="DIR", help="e.g. /etc/asterisk")
    i.add_argument("--freepbx", action="store_true", help="a FreePBX system (see below)")
    i.set_defaults(func=install)
    u = dsub.add_parser("uninstall", help="remove exactly what install added")
    u.add_argument("--from", dest="dir", required=True, metavar="DIR")
    u.set_defaults(func=uninstall)
    r = dsub.add_parser("reload", help="make Asterisk re-read the dialplan (through AMI)")
    r.add_argument("--all", action="store_true",
                   help="also reload app_queue and app_voicemail (after an install)")
    r.set_defaults(func=reload)


def check(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.asterisk_admin.check import check as check_dir
    from ivr.prompts.catalog import Catalog, CatalogError

    if args.dir is None:
        from ivr.asterisk_admin.install import SOURCE_DIR

        args.dir = str(SOURCE_DIR)
    try:
        ids: set[str] | None = set(Catalog.load(languages=cfg.call.languages).ids)
    except CatalogError as exc:
        print(f"note: prompts not checked: {exc}")
        ids = None
    problems = check_dir(Path(args.dir), ids)
    for problem in problems:
        print(problem)
    errors = [p for p in problems if p.error]
    if errors:
        print(f"{len(errors)} error(s) in the dialplan under {args.dir}")
        return 1
    print(f"dialplan under {args.dir} OK")
    return 0


def install(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.asterisk_admin import install as installer

    try:
        report = installer.install(Path(args.to), freepbx=args.freepbx)
    except (installer.InstallError, OSError) as exc:
        print(f"ivr dialplan install: {exc}", file=sys.stderr)
        return 1
    for line in report.changed or ["nothing to do: already installed"]:
        print(line)
    for note in report.notes:
        print(f"note: {note}")
    if args.freepbx:
        print(FREEPBX_HELP)
    else:
        print("Send the short code to StarPay from your phones' context with "
              "`include => starpay`.")
    print(f"Set the service address in {Path(args.to) / installer.SETTINGS}, then run "
          "`ivr dialplan check " + args.to + "` and `ivr dialplan reload --all`.")
    return 0


def uninstall(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.asterisk_admin import install as installer

    try:
        report = installer.uninstall(Path(args.dir))
    except (installer.InstallError, OSError) as exc:
        print(f"ivr dialplan uninstall: {exc}", file=sys.stderr)
        return 1
    for line in report.changed or ["nothing to remove"]:
        print(line)
    for note in report.notes:
        print(f"note: {note}")
    if report.changed:
        print("Run `ivr dialplan reload --all` to make Asterisk forget it.")
    return 0


def reload(args: argparse.Namespace, cfg: Config) -> int:
    import asyncio

    from ivr.ami.errors import AMIError  # late: ivr.ami loads the AMI client
    from ivr.asterisk.local import local_admin_login

    modules = ["pbx_config"] + (["app_queue", "app_voicemail"] if args.all else [])
    cfg = local_admin_login(cfg)  # Reload needs the system class the service's user lacks
    try:
        asyncio.run(_reload(cfg, modules))
    except (AMIError, OSError) as exc:
        print(f"ivr dialplan reload: {exc}", file=sys.stderr)
        print(f"Check that Asterisk runs and AMI at {cfg.ami.host}:{cfg.ami.port} accepts "
              f"user {cfg.ami.username} (STARPAY_AMI_SECRET).", file=sys.stderr)
        return 1
    print(f"reloaded {', '.join(modules)}")
    return 0


async def _reload(cfg: Config, modules: list[str]) -> None:
    from ivr.app import App  # late: the CLI starts without panoramisk loaded

    async with App(cfg) as app:
        client = await app.ami.connected(timeout=10.0)
        for module in modules:
            await client.reload(module)

