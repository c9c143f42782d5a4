"""Build the production FlowContext from the config (database, gateway, AMI, hours)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ivr.app_hours import business_hours
from ivr.config import Config
from ivr.flows.context import FlowContext
from ivr.gateways import from_config as gateway_from_config
from ivr.services.accounts import AccountService
from ivr.services.callbacks import CallbackStore
from ivr.services.calls import CallLog
from ivr.services.payments import PaymentService
from ivr.storage.db import Database

log = logging.getLogger(__name__)

QUEUE = "billing"  # the queue the dialplan sends STARPAY_NEXT=queue callers to


def build_context(cfg: Config) -> FlowContext:
    db = Database(cfg.database.url, echo=cfg.database.echo)
    payments = PaymentService(db, gateway_from_config(cfg.payments),
                              allow_overpay=cfg.payments.allow_overpay,
                              daily_limit_minor=cfg.payments.daily_limit_minor)
    return FlowContext(accounts=AccountService(db), payments=payments,
                       calls=CallLog(db, clock=_now), callbacks=CallbackStore(db),
                       hours=business_hours(cfg.hours),
                       agents_available=_ami_agents_available(cfg), config=cfg.call,
                       clock=_now, allow_overpay=cfg.payments.allow_overpay)


def _now() -> datetime:
    return datetime.now(UTC)


def _ami_agents_available(cfg: Config) -> Callable[[], Awaitable[bool]]:
    """An "agents available?" function on one AMI connection opened on first use."""
    from ivr.ami.client import AMIClient
    from ivr.asterisk.local import apply_local_ami_secret

    apply_local_ami_secret(cfg)  # already done by the CLI; here for embedders and tests

    client: AMIClient | None = None
    lock = asyncio.Lock()

    async def available() -> bool:
        nonlocal client
        async with lock:
            if client is None:
                client = AMIClient.from_config(cfg.ami)
                await client.connect(timeout=3.0)
        async with asyncio.timeout(3):
            summary = await client.queue_summary(QUEUE)
        return any(q.available > 0 for q in summary)

    return available
