"""Step 4: what the caller owes, in words: "Your balance is eighty-four dollars and
seventeen cents, due December fifth." Past due and zero balances say so."""

from __future__ import annotations

from ivr.prompts import speech
from ivr.services.accounts import AccountView

ZERO_PROMPT = "balance_zero"
PAST_DUE_PROMPT = "balance_past_due"
BALANCE_PROMPT = "balance_is"
DUE_PROMPT = "balance_due"


def has_balance(account: AccountView) -> bool:
    return account.balance_minor > 0


def balance_prompts(account: AccountView, lang: str) -> list[str]:
    if not has_balance(account):
        return [ZERO_PROMPT]
    ids = [PAST_DUE_PROMPT] if account.past_due else []
    ids += [BALANCE_PROMPT, *speech.money(account.balance_minor, lang)]
    if account.next_due is not None:
        ids += [DUE_PROMPT, *speech.date(account.next_due, lang)]
    return ids
