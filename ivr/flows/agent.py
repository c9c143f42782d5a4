"""Step 9: a person. In business hours with a free agent the call goes to the billing
queue. Open but every agent busy: the caller hears so and chooses a callback in
BUSY_CALLBACK_DELAY (said in minutes; at the next opening when we close before then) or a
voicemail. Closed: our hours, then a callback at the next opening or a voicemail. A call
never ends in silence.

The AGI does not queue the call itself: it sets STARPAY_NEXT (and STARPAY_ACCOUNT for the
agent's screen) and returns, and the dialplan does the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from ivr.flows.context import Call
from ivr.flows.hours_speech import describe_hours
from ivr.flows.prompter import FlowExit
from ivr.prompts import speech

log = logging.getLogger(__name__)

TRANSFER_PROMPT = "agent_transfer"
CLOSED_PROMPT = "after_hours"
HOURS_PROMPT = "hours_are"
CHOICE_PROMPT = "callback_offer"
SCHEDULED_PROMPT = "callback_scheduled"
BUSY_PROMPT = "agents_busy"
CLOSING_SOON_PROMPT = "closing_soon"
BUSY_CHOICE_PROMPT = "callback_in_offer"  # "To get a call back in" <minutes> ...
BUSY_CHOICE_KEYS_PROMPT = "callback_in_keys"  # ... "press 1. To leave a voicemail, press 2."
BUSY_SCHEDULED_PROMPT = "callback_scheduled_in"  # "We will call you back in" <minutes>
GOODBYE_PROMPT = "goodbye"
LOCKED_CLOSED_PROMPT = "verify_locked_closed"
# Open but every agent busy: call back this much later rather than at "the next opening".
# Whole minutes: the caller is told this number.
BUSY_CALLBACK_DELAY = timedelta(minutes=15)


async def agents_ready(call: Call) -> bool:
    """Open now and an agent free. AMI trouble counts as "no" so the caller gets a choice."""
    if not call.ctx.hours.is_open(call.ctx.clock()):
        return False
    try:
        return bool(await call.ctx.agents_available())
    except Exception as exc:  # AMI down or slow: offer callback/voicemail, not a dead queue
        log.warning("could not ask AMI for free agents: %s", exc)
        return False


async def to_queue(call: Call, *, announce: bool = True) -> None:
    if announce:
        await call.prompter.play([TRANSFER_PROMPT])
    # Only a verified account travels to the agent: an unverified one could be a spoofer's.
    number = call.account.account_number if call.account and call.verified else ""
    await call.session.set_variable("STARPAY_ACCOUNT", number)
    await call.session.set_variable("STARPAY_NEXT", "queue")
    call.facts.outcome = "agent"
    call.note("queue")


async def to_voicemail(call: Call) -> None:
    await call.session.set_variable("STARPAY_NEXT", "voicemail")
    call.facts.outcome = "voicemail"
    call.note("voicemail")


async def agent(call: Call) -> None:
    """Queue, or hours + callback/voicemail choice."""
    call.note("agent")
    if await agents_ready(call):
        await to_queue(call)
        return
    words = _offer_words(call, call.ctx.clock())
    if call.ani is None:
        # No number to call back: the message is the only way left.
        await call.prompter.play(words.intro)
        await to_voicemail(call)
        return
    try:
        key = await call.prompter.choose([*words.intro, *words.offer], "12", agent=False,
                                         replay=words.offer)
    except FlowExit:
        await to_voicemail(call)
        return
    if key == "2":
        await to_voicemail(call)
        return
    await call.ctx.callbacks.schedule(
        call.ani, words.due, account_id=call.account.id if call.account and call.verified else None,
        language=call.lang, call_uniqueid=call.session.uniqueid)
    call.facts.outcome = "callback"
    call.facts.details["callback_due"] = words.due.isoformat()
    call.note("callback")
    await call.prompter.play([*words.scheduled, GOODBYE_PROMPT])
    await call.session.hangup()


@dataclass(frozen=True)
class _Offer:
    """What the caller is told when no agent takes the call, and when a callback would be."""

    intro: list[str]
    offer: list[str]
    scheduled: list[str]
    due: datetime


def _offer_words(call: Call, now: datetime) -> _Offer:
    hours = call.ctx.hours
    if not hours.is_open(now):
        return _Offer([CLOSED_PROMPT, HOURS_PROMPT, *describe_hours(hours, call.lang)],
                      [CHOICE_PROMPT], [SCHEDULED_PROMPT], hours.next_opening(now))
    soon = now + BUSY_CALLBACK_DELAY
    if not hours.is_open(soon):
        # "In N minutes" would be a call after closing: promise the next opening instead.
        return _Offer([BUSY_PROMPT, CLOSING_SOON_PROMPT], [CHOICE_PROMPT], [SCHEDULED_PROMPT],
                      hours.next_opening(now))
    minutes = speech.minutes(int(BUSY_CALLBACK_DELAY.total_seconds()) // 60, call.lang)
    return _Offer([BUSY_PROMPT], [BUSY_CHOICE_PROMPT, *minutes, BUSY_CHOICE_KEYS_PROMPT],
                  [BUSY_SCHEDULED_PROMPT, *minutes], soon)


async def locked(call: Call) -> None:
    """Phone verification is locked: an agent if one is there, else come back later."""
    call.note("locked")
    if await agents_ready(call):
        await call.prompter.play(["verify_locked"])
        await to_queue(call, announce=False)
        return
    await call.prompter.play([LOCKED_CLOSED_PROMPT, GOODBYE_PROMPT])
    call.facts.outcome = "locked"
    await call.session.hangup()
