"""The *PAY call: the orchestrator that runs the steps in order.

    greet (language) → identify (ANI or account number) → verify (unless ANI is trusted)
    → balance + menu → [amount] → card, confirm, charge, result
    any "0", too many bad entries, no card, a locked account → agent (queue, or hours with
    callback / voicemail)

Every call gets a call record, written in ``finally`` (shielded), with the path through the
menu and how it ended; a call that reaches a charge writes it already with the pending
payment (see services.calls for what a crash can lose). A hang-up anywhere just ends the
call: nothing is charged without the caller's 1 on the confirmation, and a charge already
started completes and is recorded (see payment.charge).
"""

from __future__ import annotations

import asyncio
import logging

from ivr.agi.errors import AGIHangup
from ivr.flows import agent, identify, language, menu, verify
from ivr.flows.context import Call, FlowContext
from ivr.flows.prompter import CallSession, FlowExit, GoBack, Prompter
from ivr.phone import to_e164
from ivr.services.calls import CallFacts

log = logging.getLogger(__name__)


def attestation_of(session: CallSession) -> str | None:
    raw = session.args[0].strip().upper() if session.args else ""
    return raw[:1] if raw in ("A", "B", "C") else None


def new_call(session: CallSession, ctx: FlowContext) -> Call:
    ani = to_e164(session.callerid, ctx.config.default_region)
    attestation = attestation_of(session)
    facts = CallFacts(uniqueid=session.uniqueid, ani=ani, attestation=attestation,
                      started_at=ctx.clock(), language=ctx.config.default_language)
    prompter = Prompter(session, tries=ctx.config.max_tries, first_key_ms=ctx.first_key_ms,
                        next_key_ms=ctx.next_key_ms, path=facts.path)
    return Call(session=session, ctx=ctx, facts=facts, prompter=prompter, ani=ani,
                trusted_ani=verify.trust_ani(ctx.config.verify, ani, attestation))


async def pay(session: CallSession, ctx: FlowContext) -> None:
    call = new_call(session, ctx)
    try:
        await run(call)
    except AGIHangup:
        call.note("hangup")
        call.facts.outcome = call.facts.outcome or "hangup"
    except Exception:
        # The server answers FAILURE, so AGISTATUS=FAILURE sends the caller to the
        # dialplan's fallback (apology, then queue or voicemail): nothing to say here.
        call.facts.outcome = "error"
        raise
    finally:
        try:
            await asyncio.shield(ctx.calls.close(call.facts))
        except Exception:
            log.exception("could not store the call record")


async def run(call: Call) -> None:
    call.accounts_on_ani = await identify.accounts_for_trusted_ani(call)
    await language.greet(call)
    try:
        await identify_and_verify(call)
    except verify.Locked:
        await agent.locked(call)
        return
    except FlowExit:
        await agent.agent(call)
        return
    await language.adopt_account_language(call)
    while True:
        try:
            await menu.main_menu(call)
            return
        except GoBack:
            if call.facts.verified_how == "ani" and len(call.accounts_on_ani) > 1:
                try:
                    await _select(call, await identify.choose_account(call,
                                                                      call.accounts_on_ani))
                except FlowExit:
                    await agent.agent(call)
                    return
        except FlowExit:
            await agent.agent(call)
            return


async def identify_and_verify(call: Call) -> None:
    if call.accounts_on_ani:
        call.facts.verified_how = "ani"
        call.verified = True
        await _select(call, await identify.choose_account(call, call.accounts_on_ani))
        return
    account = await identify.account_by_number(call)
    call.account = account  # known but not verified: kept for the record, never spoken
    call.facts.account_id = account.id
    call.facts.verified_how = await verify.verify(call, account)
    call.verified = True


async def _select(call: Call, account: identify.AccountView) -> None:
    call.account = account
    call.facts.account_id = account.id
