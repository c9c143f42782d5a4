"""Step 2: who is calling. By caller ID (ANI) when it can be trusted, else by account number.

Trust is decided before anything is said (see verify.trust_ani). With an untrusted ANI the
number is not even looked up, so neither the prompts nor their timing differ between a
customer's number and a stranger's.
"""

from __future__ import annotations

from ivr.flows.context import Call
from ivr.flows.prompter import NO_INPUT_PROMPT, TooManyTries
from ivr.prompts import speech
from ivr.services.accounts import AccountView

ASK_ACCOUNT_PROMPT = "ask_account"
NOT_FOUND_PROMPT = "account_not_found"
SEVERAL_PROMPTS = ["accounts_several"]
ENDING_PROMPT = "account_ending_in"
PRESS_PROMPT = "press"
MAX_ACCOUNT_DIGITS = 20
MAX_CHOICES = 9


async def accounts_for_trusted_ani(call: Call) -> list[AccountView]:
    if not (call.ani and call.trusted_ani):
        return []
    return await call.ctx.accounts.by_phone(call.ani)


async def choose_account(call: Call, accounts: list[AccountView]) -> AccountView:
    """One account: it. Several: "for the account ending in 1234, press 1 ..."."""
    if len(accounts) == 1:
        return accounts[0]
    shown = accounts[:MAX_CHOICES]
    menu: list[str] = []
    for i, acct in enumerate(shown, 1):
        menu += [ENDING_PROMPT, *speech.digits(acct.account_number[-4:]),
                 PRESS_PROMPT, *speech.digits(str(i))]
    options = "".join(str(i) for i in range(1, len(shown) + 1))
    key = await call.prompter.choose([*SEVERAL_PROMPTS, *menu], options, replay=menu)
    call.note(f"account-choice:{key}")
    return shown[int(key) - 1]


async def account_by_number(call: Call) -> AccountView:
    """Ask for the account number (# ends it); raise TooManyTries after the allowed misses."""
    sorry: list[str] = []  # said at the head of the next question, in the same command
    for _ in range(call.cfg.max_tries):
        entry = await call.prompter.read([*sorry, ASK_ACCOUNT_PROMPT],
                                         max_digits=MAX_ACCOUNT_DIGITS)
        if not entry:
            sorry = [NO_INPUT_PROMPT]
            continue
        # A database look-up between two commands: keys typed before the next prompt
        # starts (the ZIP, typed ahead) are lost.
        account = await call.ctx.accounts.by_number(entry)
        if account is not None:
            call.note("account-number")
            return account
        call.note("account-not-found")
        sorry = [NOT_FOUND_PROMPT]
    await call.prompter.play(sorry)
    raise TooManyTries()
