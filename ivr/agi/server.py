"""The FastAGI server: accept Asterisk's connections, read the headers, run a handler.

Decisions the dialplan can rely on:

- When we cannot serve a call we answer with a bare ``FAILURE`` line. res_agi treats a
  first line starting with "failure" as a failed script and sets ``AGISTATUS=FAILURE``,
  so the dialplan's fall-back (agents, voicemail) runs instead of a silent hang-up.
  Merely closing the connection would leave ``AGISTATUS=SUCCESS``. This is used:
  - over ``max_sessions``: at once, before the headers are read (no work for the extra
    call; we only wait briefly for Asterisk to close so our close is not a reset);
  - for an unknown ``agi_network_script`` (after a ``VERBOSE`` line for the console);
  - when a handler raises (other than a hangup) while the caller is still there.
- A peer that sends junk, too much, or no blank line within ``header_timeout`` is dropped
  with one log line; while it waits it costs the loop nothing.
- ``close()`` stops accepting, lets live calls run for ``shutdown_grace`` seconds, then
  cancels them (their handlers see CancelledError).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

from ivr import log as ivrlog
from ivr.agi import protocol
from ivr.agi.errors import AGIError, AGIHangup, AGIProtocolError
from ivr.agi.session import AGISession
from ivr.agi.stream import AGIStream

logger = logging.getLogger(__name__)

Handler = Callable[[AGISession], Awaitable[None]]
Routes = Mapping[str, Handler] | Callable[[str], Handler | None]

FAILURE_LINE = b"FAILURE\n"
_BEST_EFFORT_TIMEOUT = 2.0  # for the courtesy line sent before FAILURE
_REFUSE_LINGER = 1.0  # how long a refused connection waits for Asterisk to close first
GC_YOUNG_THRESHOLD = 10_000  # see tune_gc()


def tune_gc(young: int = GC_YOUNG_THRESHOLD) -> None:
    """Set CPython's cycle collector up for a long-running server; call once, after start-up.

    Every collection stops the loop for as long as it walks its objects, and with thousands
    of live calls that is what made a command's p99 round trip (benchmarks/agi_sessions.py:
    14-29 collections a run, the longest 20+ ms). Cycles are still collected:

    - ``gc.freeze()``: what start-up built (modules, classes, routes) lives as long as the
      process, so it moves to the permanent generation that no collection walks again.
    - the young generation is collected after ``young`` net allocations instead of 700.
      Each command's coroutines, futures and reply live until the caller answers, often a
      second, so at 700 a collection ran about every second and walked most of the calls
      in flight. Measured on 2,000 calls: 700 -> 13 collections, longest ~9 ms (with the
      freeze); 10,000 -> one of under 10 ms; 50,000 -> one of 20-40 ms (it walks more).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


class AGIServer:
    """Serve FastAGI calls on ``host:port``, routing each by its ``agi_network_script``.

    ``routes`` is a mapping ``{"pay": handler}`` or a function ``script -> handler|None``.
    Use as ``async with AGIServer(...) as server:`` or call ``start()`` / ``close()``.
    """

    def __init__(self, routes: Routes, *, host: str = "127.0.0.1", port: int = 4573,
                 max_sessions: int = 4000, header_timeout: float = 5.0,
                 command_timeout: float = 300.0, shutdown_grace: float = 30.0,
                 backlog: int = 1024) -> None:
        self._routes = routes
        self.host = host
        self._port = port
        self.max_sessions = max_sessions
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.shutdown_grace = shutdown_grace
        # The default backlog of 100 drops SYNs when Asterisk opens hundreds of calls at
        # once; the kernel caps this at net.core.somaxconn anyway.
        self.backlog = backlog
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self.refused = 0  # connections closed for being over max_sessions

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port=0)."""
        if self._server and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.get_running_loop().create_server(
            self._new_stream, self.host, self._port, backlog=self.backlog)
        logger.info("FastAGI listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        """Start if needed, then run until close() is called."""
        await self.start()
        await self._closed.wait()

    async def close(self) -> None:
        """Stop accepting, give live calls ``shutdown_grace`` seconds, then cancel them."""
        if self._server is not None:
            self._server.close()
        if self._tasks:
            logger.info("waiting up to %.0f s for %d live call(s)", self.shutdown_grace,
                        len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("cancelled %d call(s) still running after %.0f s",
                               len(pending), self.shutdown_grace)
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
        self._closed.set()

    async def __aenter__(self) -> AGIServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _route(self, script: str) -> Handler | None:
        if callable(self._routes) and not isinstance(self._routes, Mapping):
            return self._routes(script)
        return self._routes.get(script)

    # -- one connection --------------------------------------------------------------------

    def _new_stream(self) -> AGIStream:
        return AGIStream(protocol.MAX_HEADER_BYTES, on_connect=self._on_connect)

    def _on_connect(self, stream: AGIStream) -> None:
        """A new connection (the stream's connection_made): a task for the call, or a
        refusal."""
        loop = asyncio.get_running_loop()
        if len(self._tasks) >= self.max_sessions or self._closed.is_set():
            self.refused += 1
            logger.warning("refusing FastAGI connection: %d live sessions (max %d)",
                           len(self._tasks), self.max_sessions)
            refusal = loop.create_task(self._refuse(stream))
            self._refusals.add(refusal)  # a task nobody references may be collected
            refusal.add_done_callback(self._refusals.discard)
            return
        task = loop.create_task(self._connection(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, stream: AGIStream) -> None:
        try:
            await self._serve_call(stream)
        finally:
            stream.close()

    async def _serve_call(self, stream: AGIStream) -> None:
        try:
            headers = await self._read_headers(stream)
        except AGIProtocolError as exc:
            logger.warning("dropping FastAGI connection from %s: %s", stream.peer(), exc)
            return
        session = AGISession(stream, headers, command_timeout=self.command_timeout)
        try:
            await self._run_handler(session)
        finally:
            session._release()  # its reply timer must not keep a finished call alive

    async def _run_handler(self, session: AGISession) -> None:
        # Every log line of this call (this task's context) carries the uniqueid.
        ivrlog.call_id.set(session.uniqueid or "-")
        script = session.script
        handler = self._route(script)
        if handler is None:
            logger.warning("no route for FastAGI script %r", script)
            await self._fail(session, f"StarPay: no route for {script!r}")
            return
        logger.info("call for %r on %s", script, session.channel)
        try:
            await handler(session)
        except AGIHangup:
            logger.info("caller hung up")
        except asyncio.CancelledError:
            logger.warning("call cancelled (server shutting down)")
            raise
        except Exception:
            logger.exception("handler for %r failed (uniqueid %s)", script, session.uniqueid)
            await self._fail(session, "StarPay: internal error")

    async def _read_headers(self, stream: AGIStream) -> dict[str, str]:
        try:
            async with asyncio.timeout(self.header_timeout):
                block = await stream.read_headers()
        except TimeoutError:
            raise AGIProtocolError(
                f"no complete header block within {self.header_timeout} s") from None
        # No agi_network_script is legitimate (AGI(agi://host) without a path): it routes
        # as "" and normally ends as NOTFOUND.
        headers, _ = protocol.parse_headers(protocol.split_header_block(block))
        return headers

    async def _fail(self, session: AGISession, message: str) -> None:
        """Make AGISTATUS=FAILURE (see the module docstring) if the caller is still here."""
        if session.hung_up:
            return
        try:
            async with asyncio.timeout(_BEST_EFFORT_TIMEOUT):
                await session.verbose(message, 1)
                session.stream.write(FAILURE_LINE)
        except (AGIError, TimeoutError) as exc:
            logger.debug("could not report the failure to Asterisk: %s", exc)

    async def _refuse(self, stream: AGIStream) -> None:
        try:
            stream.write(FAILURE_LINE)
        except AGIHangup:
            stream.close()
            return
        # Closing with Asterisk's headers unread would send a reset, which may destroy
        # the FAILURE line before Asterisk reads it: let Asterisk close first.
        await stream.drain_until_closed(_REFUSE_LINGER)
