"""Step 3: is the caller who the account belongs to?

Policy (config ``call.verify``): ``always`` trusts caller ID, ``attested`` trusts it only
with STIR/SHAKEN attestation A (the dialplan passes it as AGI argument 1), ``never`` never.
Caller ID vouches only for accounts on that number; anyone else gives the account number
and then the billing ZIP code (the PIN once the accounts service says which accounts have
one). Failures count on the account (the accounts service locks it after
``lockout_failures`` for ``lockout_minutes``); nothing about the account is said until the
answer is right.
"""

from __future__ import annotations

from ivr.flows.context import Call
from ivr.flows.prompter import INVALID_PROMPT, NO_INPUT_PROMPT, TooManyTries
from ivr.services.accounts import AccountView

ZIP_PROMPT = "verify_zip"
PIN_PROMPT = "verify_pin"
FAILED_PROMPT = "verify_failed"


class Locked(Exception):
    """Phone verification is locked for this account: a person must help."""


def trust_ani(policy: str, ani: str | None, attestation: str | None) -> bool:
    if ani is None:
        return False
    if policy == "always":
        return True
    if policy == "attested":
        return (attestation or "").strip().upper() == "A"
    return False


async def verify(call: Call, account: AccountView) -> str:
    """Ask ZIP (or PIN) until right; return how ("zip"/"pin"). Raise Locked/TooManyTries."""
    # The PIN is the stronger secret, but AccountView does not say yet whether one is set
    # (no ``has_pin``): until the accounts service adds it, every caller is asked the ZIP.
    use_pin = bool(getattr(account, "has_pin", False))
    prompt, how = (PIN_PROMPT, "pin") if use_pin else (ZIP_PROMPT, "zip")
    size = 4 if use_pin else 5
    for _ in range(call.cfg.max_tries):
        entry = await call.prompter.read([prompt], max_digits=size)
        if len(entry) != size:
            # A fumble (nothing, or too short) is not a guess: it does not count on the
            # account, only as a try of this call.
            call.note("verify-no-input" if not entry else "verify-short")
            await call.prompter.play([INVALID_PROMPT if entry else NO_INPUT_PROMPT])
            continue
        result = await call.ctx.accounts.verify(
            account.id, max_failures=call.cfg.lockout_failures,
            lockout_minutes=call.cfg.lockout_minutes, now=call.ctx.clock(),
            **({"pin": entry} if use_pin else {"zip_code": entry}))
        if result.ok:
            call.note(f"verified:{how}")
            return how
        if result.locked:
            call.note("verify-locked")
            raise Locked()
        call.note("verify-failed")
        await call.prompter.play([FAILED_PROMPT])
    raise TooManyTries()
