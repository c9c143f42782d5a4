"""Steps 6-8: the card on file, the explicit confirmation, the charge and its result.

The charge happens only after the caller presses 1 on "To pay $84.17 with the Visa ending
in 4242, press 1", exactly once: the idempotency key is the call's uniqueid plus the attempt
number, so an AGI that Asterisk re-runs on the same channel replays the stored payment
instead of charging again. Once started the charge is shielded from cancellation and is
recorded before the next word is said, so a hang-up cannot lose it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ivr.flows.context import Call, Receipt
from ivr.flows.prompter import WantsAgent
from ivr.prompts import speech
from ivr.services.accounts import AccountView
from ivr.services.payments import Approved, ChargeOutcome, Declined, Pending, Rejected

if TYPE_CHECKING:  # an opaque handle the payment service passes to the call log
    from ivr.services.payments import Tx

log = logging.getLogger(__name__)

NO_CARD_PROMPT = "card_none"
EXPIRED_PROMPT = "card_expired"
CANCELLED_PROMPT = "pay_cancelled"
GOODBYE_PROMPT = "goodbye"
REPEAT_PROMPT = "repeat_press_1"
RECEIPT_PROMPT = "receipt_text"
PROCESSING_PROMPT = "processing"
DECLINE_PROMPTS = {"insufficient_funds": "declined_insufficient_funds",
                   "expired_card": "declined_expired"}
DECLINE_OTHER_PROMPT = "declined_bank"
REJECT_PROMPTS = {"over_balance": "limit_over_balance", "over_daily_limit": "limit_daily",
                  "not_positive": "limit_zero"}
MAX_REPEATS = 3
CARD_PROMPT = "card_on_file"
PAY_PROMPT = "pay_to_pay"
WITH_PROMPT = "pay_with_the"
YOUR_PROMPT = "card_your"
CONFIRM_PROMPT = "pay_confirm_press"
APPROVED_PROMPTS = ["approved", "confirmation_number"]


def card_usable(account: AccountView) -> str | None:
    """None if the card on file can be charged, else the prompt that says why not."""
    if account.card is None:
        return NO_CARD_PROMPT
    if account.card.expired:
        return EXPIRED_PROMPT
    return None


async def pay(call: Call, account: AccountView, amount: int) -> bool:
    """Confirm and charge. True: the call is finished (paid or being checked); False: back
    to the menu (cancelled, declined, refused). WantsAgent when only a person can help."""
    problem = card_usable(account)
    if problem is not None:
        call.note("no-card" if problem == NO_CARD_PROMPT else "card-expired")
        await call.prompter.play([problem])
        raise WantsAgent()
    assert account.card is not None
    card = speech.card(account.card.brand, account.card.last4)
    money = speech.money(amount, call.lang)
    key = await call.prompter.choose(
        [CARD_PROMPT, *card, PAY_PROMPT, *money, WITH_PROMPT, *card, CONFIRM_PROMPT], "12",
        back=True, replay=[PAY_PROMPT, *money, YOUR_PROMPT, *card, CONFIRM_PROMPT])
    if key == "2":
        call.note("pay-cancelled")
        await call.prompter.play([CANCELLED_PROMPT])
        return False
    call.note("pay-confirmed")
    outcome = await charge(call, account, amount)
    return await tell(call, account, outcome)


async def charge(call: Call, account: AccountView, amount: int) -> ChargeOutcome:
    call.charge_attempts += 1
    key = f"ivr:{call.session.uniqueid}:{call.charge_attempts}"
    call.facts.account_id = account.id

    def record_call(tx: Tx, payment_id: int) -> None:
        # Committed with the pending payment: a crash from here on still leaves the record.
        call.ctx.calls.stage(tx, call.facts, payment_id)

    task = asyncio.ensure_future(call.ctx.payments.charge(
        account.id, amount, "ivr", key, source_id=call.session.uniqueid,
        on_pending=record_call))
    try:
        outcome = await asyncio.shield(task)
    except asyncio.CancelledError:
        # Shutting down mid-charge: let the charge finish so it is recorded, then stop.
        outcome = await task
        _record(call, outcome)
        raise
    _record(call, outcome)
    return outcome


def _record(call: Call, outcome: ChargeOutcome) -> None:
    call.facts.outcome = {"approved": "paid", "declined": "declined", "pending": "pending",
                          "rejected": "rejected"}[outcome.kind]
    if not isinstance(outcome, Rejected):
        call.facts.payment_id = outcome.payment_id
    call.note(f"charge:{outcome.kind}")


async def tell(call: Call, account: AccountView, outcome: ChargeOutcome) -> bool:
    if isinstance(outcome, Approved):
        receipt = await queue_receipt(call, account, outcome)
        said = [*APPROVED_PROMPTS, *speech.digits(outcome.confirmation)]
        await call.prompter.play([*said, *([RECEIPT_PROMPT] if receipt else [])])
        for _ in range(MAX_REPEATS):
            # The confirmation number itself is not interruptible; the question after it
            # takes its key in the same command that asks it.
            key = await call.prompter.key([REPEAT_PROMPT])
            if key != "1":
                break
            call.note("repeat-confirmation")
            await call.prompter.play(said)
        await call.prompter.play([GOODBYE_PROMPT])
        await call.session.hangup()
        return True
    if isinstance(outcome, Pending):
        call.facts.details["receipt_sms"] = {"payment_id": outcome.payment_id,
                                             "status": "when-settled"}
        await call.prompter.play([PROCESSING_PROMPT, GOODBYE_PROMPT])
        await call.session.hangup()
        return True
    if isinstance(outcome, Declined):
        await call.prompter.play(
            ["declined", DECLINE_PROMPTS.get(outcome.code, DECLINE_OTHER_PROMPT)])
        if outcome.agent_required:
            raise WantsAgent()
        return False
    # Rejected before reaching the processor: nothing was charged.
    if outcome.reason in ("no_card", "card_expired"):
        await call.prompter.play([NO_CARD_PROMPT if outcome.reason == "no_card"
                                  else EXPIRED_PROMPT])
        raise WantsAgent()
    if outcome.reason in REJECT_PROMPTS:
        await call.prompter.play([REJECT_PROMPTS[outcome.reason]])
        return False
    log.error("payment refused for a reason the caller cannot fix: %s", outcome.reason)
    await call.prompter.play(["service_trouble"])
    raise WantsAgent()


async def queue_receipt(call: Call, account: AccountView, paid: Approved) -> bool:
    """Ask for a receipt text to the number on file (the caller's own when it is one of
    them); only for accounts that agreed to texts. True if one was queued or recorded."""
    if not account.sms_opt_in or not account.phones:
        return False
    to = call.ani if call.ani in account.phones else account.phones[0]
    receipt = Receipt(to=to, account_id=account.id, payment_id=paid.payment_id,
                      amount_minor=paid.amount_minor, currency=paid.currency,
                      confirmation=paid.confirmation, language=call.lang,
                      when=call.ctx.clock().date())
    if call.ctx.send_receipt is None:
        # No SMS outbox in the product yet: keep the request where a sender can find it.
        call.facts.details["receipt_sms"] = {"to": to, "payment_id": paid.payment_id,
                                             "status": "requested"}
        return True
    try:
        ref = await call.ctx.send_receipt(receipt)
    except Exception:  # a receipt problem must not spoil an approved payment
        log.exception("could not queue the receipt for payment %s", paid.payment_id)
        return False
    call.facts.details["receipt_sms"] = {"to": to, "payment_id": paid.payment_id,
                                         "status": "queued", "ref": ref}
    return ref is not None
