"""What a call flow needs from the outside world, handed in as one small object.

One function builds it, :func:`ivr.app.flow_context`: for `ivr serve` from the config's
resources, for QA and the tests from a temporary SQLite database, a clock they control and
an "agents available?" function of their choosing. Flows never reach past it to SQL or
sockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Protocol

from ivr.config import CallConfig
from ivr.flows.prompter import CallSession, Prompter
from ivr.services.accounts import AccountService, AccountView
from ivr.services.callbacks import CallbackStore
from ivr.services.calls import CallFacts, CallLog
from ivr.services.payments import PaymentService

if TYPE_CHECKING:  # not at run time: it loads the holiday tables
    from ivr.services.hours import DayGroup

Clock = Callable[[], datetime]


class Hours(Protocol):
    """Business hours of the billing center (ivr.services.hours.BusinessHours); times and
    days only: ivr.flows.hours_speech says them."""

    def is_open(self, at: datetime) -> bool: ...
    def next_opening(self, at: datetime) -> datetime: ...
    def weekly_groups(self) -> list[DayGroup]: ...


@dataclass(frozen=True)
class Receipt:
    to: str  # E.164
    account_id: int
    payment_id: int
    amount_minor: int
    currency: str
    confirmation: str
    language: str
    when: date


# Queues a receipt text; returns an id for the call record (None: not queued).
ReceiptSender = Callable[[Receipt], Awaitable[str | None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FlowContext:
    accounts: AccountService
    payments: PaymentService
    calls: CallLog
    callbacks: CallbackStore
    hours: Hours
    # True when the billing queue has a free agent (AMI QueueSummary available > 0).
    agents_available: Callable[[], Awaitable[bool]]
    config: CallConfig = field(default_factory=CallConfig)
    clock: Clock = _utcnow
    # None: no SMS outbox yet; the receipt request is kept in the call record instead.
    send_receipt: ReceiptSender | None = None
    allow_overpay: bool = False
    # Pauses, shorter in tests.
    first_key_ms: int = 5000
    next_key_ms: int = 3000


@dataclass
class Call:
    """One call in progress: the session, what we know so far, and how to talk."""

    session: CallSession
    ctx: FlowContext
    facts: CallFacts
    prompter: Prompter
    ani: str | None
    trusted_ani: bool
    lang: str = "en"
    lang_chosen: bool = False  # the caller pressed 9: keep their choice
    accounts_on_ani: list[AccountView] = field(default_factory=list)
    account: AccountView | None = None
    verified: bool = False
    charge_attempts: int = 0

    @property
    def cfg(self) -> CallConfig:
        return self.ctx.config

    def note(self, step: str) -> None:
        self.facts.path.append(step)

    async def set_language(self, lang: str) -> None:
        if lang not in self.cfg.languages:
            lang = self.cfg.default_language
        self.lang = lang
        self.facts.language = lang
        # Asterisk then plays sounds/<lang>/starpay/<id> for every prompt.
        await self.session.set_variable("CHANNEL(language)", lang)
