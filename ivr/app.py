"""The composition root: the one place that turns :class:`Config` into objects.

An :class:`App` builds each resource once, when first asked for: one :class:`Database` per
URL, the payment gateway, the AMI link, the business hours, the pay flow's
:class:`FlowContext`, the job kinds. Resources are closed in reverse order of opening when
the app closes. The long-running parts (the FastAGI server, the jobs worker, later the web
app) are cleanup contexts in aiohttp's ``cleanup_ctx`` shape: ``async def part(app):
start; yield; stop``, entered in list order and left in reverse, so live calls still have
the database and the gateway while the FastAGI server drains.

    async with serve_app(cfg) as app:   # FastAGI + worker on top of the resources
        await stop.wait()

Commands use ``async with App(cfg) as app`` and take only what they need. QA and the tests
build their FlowContext with :func:`flow_context` from resources of their own, so they run
the product that ``ivr serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from ivr.app_hours import business_hours
from ivr.config import Config

if TYPE_CHECKING:
    from ivr.agi.server import AGIServer
    from ivr.ami.client import AMIClient
    from ivr.flows.context import FlowContext, Hours
    from ivr.gateways.base import Gateway
    from ivr.jobs.retry import RetryStrategy
    from ivr.jobs.worker import JobKind, Periodic, Worker
    from ivr.messaging.inbox import Inbox
    from ivr.messaging.outbox import Outbox
    from ivr.messaging.transports.base import Transport
    from ivr.services.callbacks import CallbackInfo
    from ivr.services.hours import BusinessHours
    from ivr.storage.db import Database
    from ivr.texts.context import TextContext

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
CleanupCtx = Callable[["App"], AsyncIterator[None]]

QUEUE = "billing"  # the queue the dialplan sends STARPAY_NEXT=queue callers to
# Where a callback rings: the admin's outbound route for customer numbers, and what the
# answered call runs (the billing queue, with the account for the agent's screen).
CALLBACK_CHANNEL = "Local/{number}@starpay-callback"
CALLBACK_CONTEXT = "starpay-queue"
CALLBACK_RING_MS = 45_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def flow_context(cfg: Config, *, db: Database, gateway: Gateway,
                 agents_available: Callable[[], Awaitable[bool]], hours: Hours | None = None,
                 clock: Clock = utcnow, first_key_ms: int = 5000,
                 next_key_ms: int = 3000, outbox: Outbox | None = None) -> FlowContext:
    """The pay flow's dependencies, from the config and the resources given.

    The one place a FlowContext is made: ``ivr serve`` (through :class:`App`), the QA
    worlds and the tests all call it, so every payment rule of the config applies to all.
    Receipts are queued through ``outbox`` (one on ``db`` when not given)."""
    from ivr.flows.context import FlowContext
    from ivr.messaging.outbox import Outbox
    from ivr.services.accounts import AccountService
    from ivr.services.callbacks import CallbackStore
    from ivr.services.calls import CallLog
    from ivr.services.payments import PaymentService
    from ivr.texts.receipts import receipt_sender

    if outbox is None:
        outbox = Outbox(db, sender=cfg.sms.sender, clock=clock)
    payments = PaymentService(db, gateway, allow_overpay=cfg.payments.allow_overpay,
                              daily_limit_minor=cfg.payments.daily_limit_minor)
    return FlowContext(accounts=AccountService(db), payments=payments,
                       calls=CallLog(db, clock=clock),
                       callbacks=CallbackStore(db, clock=clock, retry=callback_retry()),
                       hours=hours if hours is not None else business_hours(cfg.hours),
                       agents_available=agents_available, config=cfg.call, clock=clock,
                       send_receipt=receipt_sender(outbox, cfg.sms.brand),
                       allow_overpay=cfg.payments.allow_overpay,
                       first_key_ms=first_key_ms, next_key_ms=next_key_ms)


def callback_retry() -> RetryStrategy:
    from ivr.jobs.retry import fixed

    # A callback not answered is tried again 15 minutes later, three tries in all.
    return fixed(15 * 60.0, max_attempts=3)


class AmiLink:
    """The service's one AMI session. `ivr serve` logs in at start (``start``) and says
    plainly when it cannot; otherwise it is logged in on first use (Asterisk may start after
    us), and a failure is that use's, and the next one tries again."""

    def __init__(self, cfg: Config) -> None:
        from ivr.ami.client import AMIClient
        from ivr.asterisk.local import apply_local_ami_secret

        apply_local_ami_secret(cfg)  # the CLI did it already; here for embedders and tests
        self.client: AMIClient = AMIClient.from_config(cfg.ami)
        self._retry_max = max(1.0, cfg.ami.reconnect_max_delay)
        self._lock = asyncio.Lock()
        self._retrying: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Log in once, briefly; on failure log one line (what failed, what to check) and
        keep retrying in the background. Never raises: calls go on without AMI meanwhile."""
        from ivr.ami.errors import AMIError

        try:
            await self.connected(timeout)
        except AMIError as exc:
            log.error("AMI login at start failed: %s Retrying in the background; until then "
                      "callers asking for an agent are offered a callback or voicemail", exc)
            self._retrying = asyncio.get_running_loop().create_task(self._retry(str(exc)))

    async def _retry(self, last: str) -> None:
        from ivr.ami.errors import AMIError

        delay, attempts = 1.0, 0
        while True:
            await asyncio.sleep(delay)
            attempts += 1
            try:
                await self.client.connect(timeout=5.0)
            except AMIError as exc:
                if str(exc) != last:  # a new reason is news; the same one again is not
                    log.error("AMI login still failing: %s", exc)
                    last = str(exc)
                delay = min(delay * 2, self._retry_max)
            else:
                log.info("AMI login succeeded after %d retries", attempts)
                return

    async def connected(self, timeout: float = 5.0) -> AMIClient:  # noqa: ASYNC109
        from ivr.ami.errors import AMIConnectionError

        if self._retrying is not None and not self._retrying.done():
            # The background retry owns the login; a call does not wait on it.
            raise AMIConnectionError(f"not logged in to AMI at {self.client.where} yet")
        async with self._lock:
            if not self.client.connected:
                await self.client.connect(timeout=timeout)
        return self.client

    async def agents_available(self) -> bool:
        """True when the billing queue has a free agent (QueueSummary available > 0)."""
        client = await self.connected(3.0)
        async with asyncio.timeout(3):
            summary = await client.queue_summary(QUEUE)
        return any(q.available > 0 for q in summary)

    async def originate_callback(self, cb: CallbackInfo) -> bool:
        """Place a promised callback: ring the customer, then the billing queue."""
        client = await self.connected(5.0)
        result = await client.originate(
            CALLBACK_CHANNEL.format(number=cb.number), context=CALLBACK_CONTEXT, exten="s",
            variables={"STARPAY_ACCOUNT": str(cb.account_id or ""),
                       "CHANNEL(language)": cb.language, "STARPAY_CALLBACK": str(cb.id)},
            caller_id="StarPay", timeout_ms=CALLBACK_RING_MS)
        return bool(getattr(result, "success", False))

    async def close(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
            self._retrying = None
        await self.client.close()


class App:
    """Resources built from one Config, each once; see the module docstring."""

    def __init__(self, cfg: Config, *, clock: Clock = utcnow) -> None:
        self.cfg = cfg
        self.clock = clock
        self.cleanup_ctx: list[CleanupCtx] = []
        self._stack = contextlib.AsyncExitStack()
        self._databases: dict[str, Database] = {}
        self._gateway: Gateway | None = None
        self._ami: AmiLink | None = None
        self._hours: BusinessHours | None = None
        self._flow_context: FlowContext | None = None
        self._transport: Transport | None = None
        self._outbox: Outbox | None = None
        self.worker: Worker | None = None
        self.agi_server: AGIServer | None = None

    async def __aenter__(self) -> App:
        try:
            for part in self.cleanup_ctx:
                await self._stack.enter_async_context(contextlib.asynccontextmanager(part)(self))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    # ---- resources, each built once and closed with the app --------------------------------

    def database(self, url: str | None = None) -> Database:
        from ivr.storage.db import Database

        url = url or self.cfg.database.url
        db = self._databases.get(url)
        if db is None:
            db = self._databases[url] = Database(url, echo=self.cfg.database.echo)
            self._stack.push_async_callback(db.dispose)
        return db

    @property
    def engines(self) -> int:
        """How many databases are open (one per URL)."""
        return len(self._databases)

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            from ivr.gateways import from_config

            self._gateway = from_config(self.cfg.payments)
            self._stack.push_async_callback(self._gateway.close)
        return self._gateway

    @property
    def ami(self) -> AmiLink:
        if self._ami is None:
            self._ami = AmiLink(self.cfg)
            self._stack.push_async_callback(self._ami.close)
        return self._ami

    @property
    def hours(self) -> BusinessHours:
        if self._hours is None:
            self._hours = business_hours(self.cfg.hours)
        return self._hours

    def flow_context(self) -> FlowContext:
        if self._flow_context is None:
            self._flow_context = flow_context(
                self.cfg, db=self.database(), gateway=self.gateway,
                agents_available=self.ami.agents_available, hours=self.hours,
                clock=self.clock, outbox=self.outbox)
        return self._flow_context

    @property
    def transport(self) -> Transport:
        """The SMS transport of ``[sms] transport``: where transports plug in."""
        if self._transport is None:
            kind = self.cfg.sms.transport
            if kind == "outbox":
                from ivr.messaging.transports.outbox import OutboxTransport

                self._transport = OutboxTransport()
            else:  # http (ivr/messaging/transports/http.py), asterisk: not built yet
                raise RuntimeError(f"sms.transport = {kind} is not available in this "
                                   "version; use outbox")
            self._stack.push_async_callback(self._transport.close)
        return self._transport

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            from ivr.messaging.outbox import Outbox

            self._outbox = Outbox(self.database(), sender=self.cfg.sms.sender,
                                  clock=self.clock)
        return self._outbox

    @property
    def inbox(self) -> Inbox:
        from ivr.messaging.inbox import Inbox

        return Inbox(self.database(), clock=self.clock)

    def text_context(self) -> TextContext:
        """What the text replies (ivr/texts/) get: the SMS twin of flow_context()."""
        from ivr.messaging.optouts import OptOuts
        from ivr.texts.context import TextContext

        s = self.cfg.sms
        return TextContext(outbox=self.outbox, optouts=OptOuts(self.database()),
                           brand=s.brand, help_contact=s.help_contact, confirm=s.confirm,
                           notice_window_days=s.notice_window_days, clock=self.clock)

    # ---- background work -------------------------------------------------------------------

    def job_kinds(self) -> dict[str, JobKind]:
        """Every job kind this product runs, by name."""
        from ivr.jobs.retry import RetryStrategy
        from ivr.jobs.worker import JobKind
        from ivr.messaging import sending
        from ivr.messaging.outbox import SEND_JOB
        from ivr.services import callbacks, reconcile

        store = self.flow_context().callbacks
        return {
            reconcile.RECONCILE_JOB: JobKind(
                reconcile.reconcile_job(
                    self.database(), self.gateway,
                    min_age=timedelta(seconds=self.cfg.payments.reconcile_min_age)),
                retry=RetryStrategy(max_attempts=1)),
            callbacks.CALLBACK_JOB: JobKind(
                callbacks.place_callback_job(store, self.ami.originate_callback,
                                             hours=self.hours),
                retry=store.retry, timeout=CALLBACK_RING_MS / 1000 + 30),
            SEND_JOB: JobKind(
                sending.send_job(self.outbox, self.transport,
                                 sending.SenderPacer(self.cfg.sms.rate_per_second)),
                retry=sending.SEND_RETRY, timeout=sending.SEND_TIMEOUT),
        }

    def periodic(self) -> list[Periodic]:
        from ivr.jobs.worker import Periodic
        from ivr.services.reconcile import RECONCILE_JOB

        return [Periodic(RECONCILE_JOB, self.cfg.payments.reconcile_interval)]


# ---- the long-running parts of `ivr serve` ------------------------------------------------

async def agi_server(app: App) -> AsyncIterator[None]:
    """The FastAGI server with the product's routes; drains live calls on the way out."""
    from ivr import flows
    from ivr.agi.server import AGIServer

    a = app.cfg.agi
    server = AGIServer(flows.routes(app.flow_context()), host=a.host, port=a.port,
                       max_sessions=a.max_sessions, header_timeout=a.header_timeout,
                       command_timeout=a.command_timeout, shutdown_grace=a.shutdown_grace)
    async with server:
        app.agi_server = server
        try:
            yield
        finally:
            app.agi_server = None


async def jobs_worker(app: App) -> AsyncIterator[None]:
    """The durable jobs worker: reconcile passes, callbacks, and what later kinds add."""
    from ivr.jobs.worker import Worker

    worker = Worker(app.database(), app.job_kinds(), periodic=app.periodic())
    async with worker:
        app.worker = worker
        app.outbox.on_queued = worker.wake  # a text queued here goes out now, not next poll
        try:
            yield
        finally:
            app.outbox.on_queued = None
            app.worker = None


async def ami_login(app: App) -> AsyncIterator[None]:
    """Log in to AMI at start, so a wrong secret or a stopped Asterisk shows in the first
    lines of `ivr serve`, not with the first caller who asks for an agent."""
    await app.ami.start()
    yield


def serve_app(cfg: Config) -> App:
    """What `ivr serve` runs: the resources, the AMI login, the FastAGI server, then the
    worker (stopped first, so a job never outlives the resources it uses)."""
    app = App(cfg)
    app.cleanup_ctx += [ami_login, agi_server, jobs_worker]
    return app
