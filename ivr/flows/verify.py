"""Step 3: is the caller who the account belongs to?

Policy (config ``call.verify``): ``always`` trusts caller ID, ``attested`` trusts it only
with STIR/SHAKEN attestation A (the dialplan passes it as AGI argument 1), ``never`` never.
Caller ID vouches only for accounts on that number; anyone else gives the account number
and then proves it with what ``call.verify_with`` says:

- ``zip`` (default): the five digit billing ZIP code.
- ``pin``: the four digit PIN when the account has one; an account without a PIN is asked
  the ZIP.
- ``zip_or_pin``: the caller may use either. An account with a PIN is asked "your PIN, or
  your billing ZIP code": 4 digits are taken as the PIN and 5 as the ZIP. An account
  without a PIN is asked the ZIP.

Failures of either kind count on the account together (the accounts service locks it after
``lockout_failures`` for ``lockout_minutes``); nothing about the account is said until the
answer is right.
"""

from __future__ import annotations

from ivr.flows.context import Call
from ivr.flows.prompter import INVALID_PROMPT, NO_INPUT_PROMPT, TooManyTries
from ivr.services.accounts import AccountView

ZIP_PROMPT = "verify_zip"
PIN_PROMPT = "verify_pin"
PIN_OR_ZIP_PROMPT = "verify_pin_or_zip"
FAILED_PROMPT = "verify_failed"

ZIP_DIGITS = 5
PIN_DIGITS = 4

# The prompt and what each answer length means: {digits: "zip" | "pin"}.
_QUESTIONS: dict[str, tuple[str, dict[int, str]]] = {
    "zip": (ZIP_PROMPT, {ZIP_DIGITS: "zip"}),
    "pin": (PIN_PROMPT, {PIN_DIGITS: "pin"}),
    "zip_or_pin": (PIN_OR_ZIP_PROMPT, {PIN_DIGITS: "pin", ZIP_DIGITS: "zip"}),
}


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


def question(verify_with: str, account: AccountView) -> tuple[str, dict[int, str]]:
    """What to ask this account's caller: a PIN only exists on some accounts."""
    return _QUESTIONS[verify_with if account.has_pin else "zip"]


async def verify(call: Call, account: AccountView) -> str:
    """Ask until right; return how ("zip"/"pin"). Raise Locked/TooManyTries."""
    prompt, kinds = question(call.cfg.verify_with, account)
    longest = max(kinds)
    sorry: list[str] = []  # said at the head of the next question, in the same command
    for _ in range(call.cfg.max_tries):
        entry = await call.prompter.read([*sorry, prompt], max_digits=longest)
        how = kinds.get(len(entry))
        if how is None:
            # A fumble (nothing, or a length no answer has) is not a guess: it does not
            # count on the account, only as a try of this call.
            call.note("verify-no-input" if not entry else "verify-short")
            sorry = [INVALID_PROMPT if entry else NO_INPUT_PROMPT]
            continue
        # The check reads and writes the database between two commands: keys typed while
        # it runs (before "that does not match" starts) are lost.
        result = await call.ctx.accounts.verify(
            account.id, max_failures=call.cfg.lockout_failures,
            lockout_minutes=call.cfg.lockout_minutes, now=call.ctx.clock(),
            **({"pin": entry} if how == "pin" else {"zip_code": entry}))
        if result.ok:
            call.note(f"verified:{how}")
            return how
        if result.locked:
            call.note("verify-locked")
            raise Locked()
        call.note("verify-failed")
        sorry = [FAILED_PROMPT]
    await call.prompter.play(sorry)
    raise TooManyTries()
