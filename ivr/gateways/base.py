"""The one small interface every payment processor sits behind.

Outcomes of a charge:

* a :class:`ChargeResult` — the processor answered: ``approved``, ``declined`` (a definite
  no, nothing taken) or ``action_required`` (the bank wants the card holder to authenticate;
  only an agent or a link can finish it);
* :class:`OutcomeUnknown` — timeout, 5xx or a dropped connection: the money may or may not
  have moved. The payment stays ``unknown`` until :meth:`Gateway.lookup` settles it;
* :class:`ChargeFailed` — the processor refused the request itself (bad key, bad request,
  rate limit): certainly nothing was charged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ChargeStatus = Literal["approved", "declined", "action_required"]

# Plain words a person can be told; the codes follow Stripe's decline/error codes.
REASONS: dict[str, str] = {
    "insufficient_funds": "the bank declined it: not enough funds",
    "expired_card": "the card on file has expired",
    "do_not_honor": "the bank declined it without giving a reason",
    "card_declined": "the bank declined the card",
    "generic_decline": "the bank declined the card",
    "processing_error": "the card processor had an error and took no money",
    "authentication_required": "the bank wants the card holder to confirm this payment",
    "lost_card": "the bank declined the card",
    "stolen_card": "the bank declined the card",
    "incorrect_cvc": "the bank declined the card",
}


def reason_for(code: str | None) -> str:
    return REASONS.get(code or "", "the payment was declined")


@dataclass(frozen=True)
class ChargeRequest:
    method_token: str
    amount_minor: int
    currency: str
    idempotency_key: str
    metadata: dict[str, str] = field(default_factory=dict)
    customer: str | None = None  # the processor's customer the token belongs to (Stripe)


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    amount_minor: int
    currency: str
    reference: str | None = None  # the processor's id for the charge (Stripe: pi_...)
    decline_code: str | None = None
    reason: str | None = None  # plain words for declines

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True)
class RefundResult:
    reference: str
    amount_minor: int
    status: Literal["succeeded", "pending", "failed"]


class GatewayError(Exception):
    """Base of gateway failures."""


class OutcomeUnknown(GatewayError):
    """We do not know whether money moved (timeout, 5xx, dropped connection)."""

    def __init__(self, message: str, reference: str | None = None) -> None:
        super().__init__(message)
        self.reference = reference


class ChargeFailed(GatewayError):
    """The processor refused the request; nothing was charged."""

    def __init__(self, message: str, code: str = "processing_error") -> None:
        super().__init__(message)
        self.code = code


class Gateway(Protocol):
    name: str

    async def charge(self, method_token: str, amount_minor: int, currency: str,
                     idempotency_key: str, metadata: dict[str, str],
                     customer: str | None = None) -> ChargeResult:
        """Charge once per idempotency key; a repeat returns the first outcome."""
        ...

    async def lookup(self, idempotency_key: str,
                     reference: str | None = None) -> ChargeResult | None:
        """What happened to the charge with this key; None if the processor never saw it."""
        ...

    async def refund(self, reference: str, amount_minor: int,
                     idempotency_key: str) -> RefundResult:
        """Refund part or all of the charge ``reference`` once per idempotency key; a repeat
        returns the first refund. Raises OutcomeUnknown / ChargeFailed as charge does."""
        ...

    async def lookup_refund(self, reference: str,
                            idempotency_key: str) -> RefundResult | None:
        """The refund made on charge ``reference`` with this key; None if there is none."""
        ...

    async def close(self) -> None:
        ...

