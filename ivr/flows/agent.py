"""Step 9: a person. In business hours with a free agent the call goes to the billing
queue; otherwise the caller hears our hours and chooses a callback at the next opening or
a voicemail. A call never ends in silence.

The AGI does not queue the call itself: it sets STARPAY_NEXT (and STARPAY_ACCOUNT for the
agent's screen) and returns, and the dialplan does the rest.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from ivr.flows.context import Call
from ivr.flows.hours_speech import describe_hours
from ivr.flows.prompter import FlowExit

log = logging.getLogger(__name__)

TRANSFER_PROMPT = "agent_transfer"
CLOSED_PROMPT = "after_hours"
HOURS_PROMPT = "hours_are"
CHOICE_PROMPT = "callback_offer"
SCHEDULED_PROMPT = "callback_scheduled"
GOODBYE_PROMPT = "goodbye"
LOCKED_CLOSED_PROMPT = "verify_locked_closed"
# Open but every agent busy: call back this much later rather than at "the next opening".
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
    now = call.ctx.clock()
    is_open = call.ctx.hours.is_open(now)
    intro = [] if is_open else [CLOSED_PROMPT, HOURS_PROMPT,
                                *describe_hours(call.ctx.hours, call.lang)]
    if call.ani is None:
        # No number to call back: the message is the only way left.
        await call.prompter.play(intro)
        await to_voicemail(call)
        return
    try:
        key = await call.prompter.choose([*intro, CHOICE_PROMPT], "12", agent=False,
                                         replay=[CHOICE_PROMPT])
    except FlowExit:
        await to_voicemail(call)
        return
    if key == "2":
        await to_voicemail(call)
        return
    due = now + BUSY_CALLBACK_DELAY if is_open else call.ctx.hours.next_opening(now)
    await call.ctx.callbacks.schedule(
        call.ani, due, account_id=call.account.id if call.account and call.verified else None,
        language=call.lang, call_uniqueid=call.session.uniqueid)
    call.facts.outcome = "callback"
    call.facts.details["callback_due"] = due.isoformat()
    call.note("callback")
    await call.prompter.play([SCHEDULED_PROMPT, GOODBYE_PROMPT])
    await call.session.hangup()


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
