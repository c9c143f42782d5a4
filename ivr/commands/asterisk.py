"""`ivr asterisk start|stop|status|cli|restart`: the local Asterisk instance."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.asterisk.local import LocalAsterisk
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("asterisk", help="run the local Asterisk instance")
    asub = p.add_subparsers(dest="action", required=True)
    st = asub.add_parser("start", help="start it in the background (idempotent); an AMI or "
                         "SIP port another process holds is replaced by a free one")
    st.add_argument("--keep-ports", action="store_true",
                    help="fail, naming the port and what holds it, instead of moving")
    st.set_defaults(func=start)
    asub.add_parser("stop", help="stop it (exit 0; says so when it was not running)"
                    ).set_defaults(func=stop)
    asub.add_parser("restart", help="stop then start it").set_defaults(func=restart)
    asub.add_parser("status", help="is it running, on which ports").set_defaults(func=status)
    c = asub.add_parser("cli", help="run an Asterisk CLI command, e.g. ivr asterisk cli "
                        "'core show channels'")
    c.add_argument("words", nargs="+")
    c.set_defaults(func=cli)


def instance(cfg: Config) -> LocalAsterisk:
    """The instance `make run` uses: fixed ports from the config, so the service finds it."""
    from ivr.asterisk.local import LocalAsterisk, Ports

    ports = Ports(ami=cfg.ami.port, agi=cfg.agi.port, sip=cfg.asterisk.sip_port)
    return LocalAsterisk(cfg.asterisk.instance, root=cfg.asterisk.root or None, ports=ports,
                         agi_host=_agi_host(cfg))


def _agi_host(cfg: Config) -> str:
    return "127.0.0.1" if cfg.agi.host in ("0.0.0.0", "::", "localhost") else cfg.agi.host


def _guard(fn):
    def run(args: argparse.Namespace, cfg: Config) -> int:
        from ivr.asterisk.local import AsteriskFailed, AsteriskNotFound

        try:
            return fn(instance(cfg), args)
        except (AsteriskNotFound, AsteriskFailed) as exc:
            print(f"ivr asterisk: {exc}", file=sys.stderr)
            return 1
    return run


@_guard
def start(a: LocalAsterisk, args: argparse.Namespace) -> int:
    already = a.running()
    a.start(detach=True, move_taken_ports=not getattr(args, "keep_ports", False))
    for move in a.port_moves:
        print(f"note: {move} (the other process is left alone; ivr commands follow the "
              "new port)")
    print(f"asterisk {'already running' if already else 'started'}: instance {a.name}, "
          f"AMI 127.0.0.1:{a.ami_port}, dialplan AGI -> 127.0.0.1:{a.agi_port}, "
          f"SIP 127.0.0.1:{a.ports.sip}")
    return 0


@_guard
def stop(a: LocalAsterisk, args: argparse.Namespace) -> int:
    # Stopping what is not running is not a failure (stop is idempotent, like start), but
    # it is said: exit 0 either way.
    was_running = a.running()
    a.stop()
    print("asterisk stopped" if was_running else
          f"asterisk was not running (instance {a.name}): nothing to stop")
    return 0


@_guard
def restart(a: LocalAsterisk, args: argparse.Namespace) -> int:
    a.stop()
    a.start(detach=True)
    for move in a.port_moves:
        print(f"note: {move}")
    print("asterisk restarted")
    return 0


@_guard
def status(a: LocalAsterisk, args: argparse.Namespace) -> int:
    from ivr.asterisk.local import ASTERISK_PORTS, port_free, port_holder

    if not a.running():
        print(f"asterisk is not running (instance {a.name}); start it with "
              "`ivr asterisk start`")
        return 3
    print(a.cli("core show uptime").strip())
    held = a.listening()
    for name, (what, kind) in ASTERISK_PORTS.items():
        port = getattr(a.ports, name)
        print(f"{what} 127.0.0.1:{port}: " + ("listening" if held[name] else
              f"NOT held by this Asterisk (held by {port_holder(port, kind)})"))
    agi = "nothing listens: start `ivr serve`" if port_free(a.agi_port) else \
        f"{port_holder(a.agi_port)} listens"
    print(f"AGI target 127.0.0.1:{a.agi_port}: {agi}")
    print(f"log {a.log_path}")
    return 0 if all(held.values()) else 1


@_guard
def cli(a: LocalAsterisk, args: argparse.Namespace) -> int:
    out = a.cli(" ".join(args.words))
    print(out, end="")
    # `asterisk -rx` exits 0 even for a command it does not know.
    return 1 if out.lstrip().startswith("No such command") else 0
