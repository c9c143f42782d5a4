"""`ivr serve`: run the FastAGI server and the services beside it until signalled.

Services that must run alongside the AGI server (payment reconciler, AMI client, web
console) go in :data:`SERVICES`: each is a function ``cfg -> async context manager`` that
starts the service on enter and stops it on exit. They start after the AGI server and stop
before it, in reverse order, so calls still in progress can use them while they finish.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from ivr.agi.server import AGIServer
    from ivr.config import Config

logger = logging.getLogger(__name__)

Service = Callable[["Config"], AbstractAsyncContextManager[object]]


# Each imports its service when `ivr serve` starts it, not when the CLI builds its parser:
# the services pull in storage (SQLAlchemy), which `ivr --help` has no use for.
def _reconciler(cfg: Config) -> AbstractAsyncContextManager[object]:
    from ivr.services.reconcile import reconciler_service

    return reconciler_service(cfg)


def _callbacks(cfg: Config) -> AbstractAsyncContextManager[object]:
    from ivr.services.callbacks import callback_scheduler

    return callback_scheduler(cfg)


# The other long-running parts of the product; see the module docstring.
SERVICES: list[Service] = [_reconciler, _callbacks]


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

    from ivr import flows  # the outermost room: flows pull in services and storage
    from ivr.agi.server import AGIServer

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    server = AGIServer(
        flows.routes(cfg=cfg), host=cfg.agi.host, port=cfg.agi.port,
        max_sessions=cfg.agi.max_sessions, header_timeout=cfg.agi.header_timeout,
        command_timeout=cfg.agi.command_timeout, shutdown_grace=cfg.agi.shutdown_grace)
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(server)
            for service in SERVICES:
                await stack.enter_async_context(service(cfg))
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
