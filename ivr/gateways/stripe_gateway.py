"""Stripe: off-session PaymentIntents on the saved card, with our idempotency key always.

The ``stripe`` package's client is synchronous here (its async variant needs httpx or an
aiohttp client wired in): every call runs in a worker thread so the event loop never blocks.
The package retries connection errors, timeouts and 409s itself, always with our key, so a
retry can never charge twice: Stripe replays the first answer for a key it has seen.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import stripe

from ivr.gateways.base import (
    ChargeFailed,
    ChargeResult,
    OutcomeUnknown,
    RefundResult,
    reason_for,
)

if TYPE_CHECKING:  # the params module's layout moves between stripe releases
    from stripe.params import PaymentIntentCreateParams

METADATA_KEY = "starpay_key"


class StripeGateway:
    name = "stripe"

    def __init__(self, api_key: str, api_base: str | None = None,
                 max_network_retries: int = 2, timeout: float = 30.0) -> None:
        kw: dict[str, Any] = {}
        if api_base:
            kw["base_addresses"] = {"api": api_base}
        self.client = stripe.StripeClient(
            api_key, max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout), **kw)

    async def close(self) -> None:
        return None

    async def charge(self, method_token: str, amount_minor: int, currency: str,
                     idempotency_key: str, metadata: dict[str, str],
                     customer: str | None = None) -> ChargeResult:
        params: PaymentIntentCreateParams = {
            "amount": amount_minor, "currency": currency.lower(),
            "payment_method": method_token, "off_session": True, "confirm": True,
            "metadata": {**metadata, METADATA_KEY: idempotency_key},
        }
        if customer:
            params["customer"] = customer
        try:
            intent = await asyncio.to_thread(
                self.client.v1.payment_intents.create, params,
                {"idempotency_key": idempotency_key})
        except stripe.CardError as exc:
            return _from_card_error(exc, amount_minor, currency)
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            # Timeout, dropped connection or a 5xx: Stripe may have charged.
            raise OutcomeUnknown(f"stripe: {type(exc).__name__}: {exc.user_message or exc}"
                                 ) from exc
        except stripe.RateLimitError as exc:
            raise ChargeFailed("stripe: rate limited, nothing charged; try again",
                               code="rate_limited") from exc
        except stripe.StripeError as exc:
            raise ChargeFailed(f"stripe refused the request: {exc.user_message or exc}",
                               code=getattr(exc, "code", None) or "processing_error") from exc
        return _from_intent(intent)

    async def lookup(self, idempotency_key: str,
                     reference: str | None = None) -> ChargeResult | None:
        """Retrieve by our stored intent id; without one, search by our key in metadata.

        Search is eventually consistent (it can lag by seconds to an hour), so a miss is not
        proof of absence: the reconciler waits long before it gives up on a payment.
        """
        try:
            if reference:
                intent = await asyncio.to_thread(self.client.v1.payment_intents.retrieve,
                                                 reference)
            else:
                found = await asyncio.to_thread(
                    self.client.v1.payment_intents.search,
                    {"query": f"metadata['{METADATA_KEY}']:'{idempotency_key}'"})
                if not found.data:
                    return None
                intent = found.data[0]
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise ChargeFailed(f"stripe: {exc}") from exc
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            raise OutcomeUnknown(f"stripe look-up failed: {exc}") from exc
        return _from_intent(intent)  # still processing: OutcomeUnknown, ask again later

    async def refund(self, reference: str, amount_minor: int,
                     idempotency_key: str) -> RefundResult:
        try:
            refund = await asyncio.to_thread(
                self.client.v1.refunds.create,
                {"payment_intent": reference, "amount": amount_minor,
                 "metadata": {METADATA_KEY: idempotency_key}},
                {"idempotency_key": idempotency_key})
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            raise OutcomeUnknown(f"stripe refund: {exc}") from exc
        except stripe.StripeError as exc:
            raise ChargeFailed(f"stripe refused the refund: {exc.user_message or exc}",
                               code=getattr(exc, "code", None) or "refund_refused") from exc
        return _refund_result(refund)

    async def lookup_refund(self, reference: str,
                            idempotency_key: str) -> RefundResult | None:
        """The intent's refunds carry our key in metadata; listing them is not a search,
        so a miss means Stripe has no such refund (Stripe forgets idempotency keys after a
        day, this does not)."""
        try:
            page = await asyncio.to_thread(
                self.client.v1.refunds.list, {"payment_intent": reference, "limit": 100})
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise ChargeFailed(f"stripe: {exc}") from exc
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            raise OutcomeUnknown(f"stripe refund look-up failed: {exc}") from exc
        for refund in page.auto_paging_iter():
            if (_plain(refund).get("metadata") or {}).get(METADATA_KEY) == idempotency_key:
                return _refund_result(refund)
        return None


def _refund_result(obj: Any) -> RefundResult:
    refund = _plain(obj)
    status: Literal["succeeded", "pending", "failed"] = (
        "succeeded" if refund.get("status") == "succeeded"
        else "pending" if refund.get("status") in ("pending", "requires_action")
        else "failed")
    return RefundResult(str(refund["id"]), int(refund["amount"]), status)


def _plain(obj: Any) -> dict[str, Any]:
    # stripe >= 13 objects are not dicts; work on plain data.
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj or {})


def _from_intent(obj: Any) -> ChargeResult:
    intent = _plain(obj)
    pi_id, status = str(intent["id"]), intent.get("status")
    amount, currency = int(intent["amount"]), str(intent["currency"]).upper()
    if status == "succeeded":
        return ChargeResult("approved", amount, currency, reference=pi_id)
    if status in ("requires_action", "requires_payment_method", "canceled"):
        err = intent.get("last_payment_error") or {}
        code = err.get("decline_code") or err.get("code")
        if code == "authentication_required" or status == "requires_action":
            return ChargeResult("action_required", amount, currency, reference=pi_id,
                                decline_code="authentication_required",
                                reason=reason_for("authentication_required"))
        code = code or ("canceled" if status == "canceled" else "card_declined")
        return ChargeResult("declined", amount, currency, reference=pi_id,
                            decline_code=code, reason=reason_for(code))
    # processing / requires_confirmation / requires_capture: not settled yet.
    raise OutcomeUnknown(f"stripe: payment intent {pi_id} is {status}", reference=pi_id)


def _from_card_error(exc: stripe.CardError, amount: int, currency: str) -> ChargeResult:
    body = exc.json_body  # the parsed JSON reply, typed as a plain object by stripe
    err = _plain(body.get("error")) if isinstance(body, dict) else {}
    ref = (err.get("payment_intent") or {}).get("id")
    if exc.code == "authentication_required":
        return ChargeResult("action_required", amount, currency.upper(), reference=ref,
                            decline_code="authentication_required",
                            reason=reason_for("authentication_required"))
    code = err.get("decline_code") or exc.code or "card_declined"
    return ChargeResult("declined", amount, currency.upper(), reference=ref,
                        decline_code=code, reason=reason_for(code))
