"""Step 5: the main menu, after the balance.

1 pays the full balance, 2 another amount, 3 hears the balance again, 0 a person (at any
menu), * goes back (to the account choice when the number has several).
"""

from __future__ import annotations

from ivr.flows import amount as amount_step
from ivr.flows import balance as balance_step
from ivr.flows import payment as payment_step
from ivr.flows.context import Call
from ivr.flows.prompter import GoBack, WantsAgent

MENU_PROMPT = "main_menu"
GOODBYE_PROMPT = "goodbye"


async def main_menu(call: Call) -> None:
    """Runs until the call is done; raises WantsAgent/TooManyTries/GoBack."""
    assert call.account is not None
    # The first time round, the view read moments ago by identification is spoken as is;
    # after anything that may have moved the balance (a repeat, a decline, a cancel, going
    # back) it is read again. The charge re-checks balance and card in its own transaction.
    fresh = True
    while True:
        if not fresh:
            call.account = await call.ctx.accounts.get(call.account.id) or call.account
        fresh = False
        account = call.account
        said = balance_step.balance_prompts(account, call.lang)
        if not balance_step.has_balance(account) and not call.ctx.allow_overpay:
            call.note("zero-balance")
            key = await call.prompter.play([*said, GOODBYE_PROMPT], escape="0")
            if key == "0":
                raise WantsAgent()
            call.facts.outcome = call.facts.outcome or "no-balance"
            await call.session.hangup()
            return
        if account.past_due:
            call.note("past-due")
        key = await call.prompter.choose([*said, MENU_PROMPT], "123", back=True,
                                         replay=[MENU_PROMPT])
        call.note(f"menu:{key}")
        if key == "3":
            continue
        try:
            if key == "1":
                amount = account.balance_minor
            else:
                amount = await amount_step.other_amount(call, account.balance_minor)
            if await payment_step.pay(call, account, amount):
                return
        except GoBack:
            call.note("back")
            continue
