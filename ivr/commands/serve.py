"""`ivr serve`: run the FastAGI server and the jobs worker until signalled.

What runs is put together by the composition root (:func:`ivr.app.serve_app`): the
resources (database, gateway, AMI), then the FastAGI server, then the jobs worker
(reconcile passes, callbacks); shutdown leaves them in reverse order, so calls still in
progress keep the database and the gateway while they finish.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from ivr.agi.server import AGIServer
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="answer *PAY calls: run the FastAGI server")
    p.add_argument("--host", help="address to listen on (default: agi.host)")
    p.add_argument("--port", type=int, help="TCP port to listen on (default: agi.port)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    import asyncio

    from ivr.agi.server import tune_gc

    if args.host:
        cfg.agi.host = args.host
    if args.port is not None:
        cfg.agi.port = args.port
    from ivr.app_hours import config_errors

    errors = config_errors(cfg)
    if errors:
        for e in errors:
            print(f"ivr serve: {e}")
        return 2
    try:
        # GC tuning only here, once everything has started: it freezes this process's
        # start-up objects for good, which tests calling serve() must not inherit.
        asyncio.run(serve(cfg, ready=lambda _server: tune_gc()))
    except OSError as exc:  # typically the port is taken
        print(f"ivr serve: cannot listen on {cfg.agi.host}:{cfg.agi.port}: {exc}")
        return 1
    return 0


async def serve(cfg: Config, stop: asyncio.Event | None = None,
                ready: Callable[[AGIServer], None] | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives, then shut down gracefully."""
    import asyncio

    from ivr.app import serve_app

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with serve_app(cfg) as app:
            server = app.agi_server
            assert server is not None
            print(f"StarPay FastAGI listening on {cfg.agi.host}:{server.port} "
                  f"(dialplan: AGI(agi://{cfg.agi.host}:{server.port}/pay)); "
                  "Ctrl-C to stop", flush=True)
            if ready:
                ready(server)
            await stop.wait()
            print(f"stopping: {server.active_sessions} live call(s) get up to "
                  f"{cfg.agi.shutdown_grace:.0f} s to finish", flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
