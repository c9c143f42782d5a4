"""Step 5b: another amount, typed on the keypad and read back before anything happens.

Keypad rule (ivr.money.parse_keypad): digits are dollars, * is the decimal point, at most
two decimals, # ends. An entry that breaks it is answered with the rule, not "not a valid
choice" (the caller typed an amount, just not one we can read). Limits the caller can fix
are explained at once (zero, more than the balance); the payments service still enforces
every limit when the charge is made.
"""

from __future__ import annotations

from ivr.flows.context import Call
from ivr.flows.prompter import DIGITS, NO_INPUT_PROMPT, TooManyTries
from ivr.money import AmountError, AmountTooLarge, parse_keypad
from ivr.prompts import speech

RULE_PROMPT = "amount_rule"
ZERO_PROMPT = "limit_zero"
OVER_BALANCE_PROMPTS = ["limit_over_balance", "limit_most_today"]  # then the balance
KEYPAD_RULE_PROMPT = "amount_keypad_rule"  # "Use one star ... at most two digits after it."
TOO_LARGE_PROMPT = "amount_too_large"
READ_BACK_PROMPT = "you_entered"
CONFIRM_PROMPT = "amount_confirm"
MAX_KEYS = 12


async def other_amount(call: Call, balance_minor: int) -> int:
    """The amount confirmed by the caller; GoBack/WantsAgent/TooManyTries from the menu."""
    misses = 0
    sorry: list[str] = []  # said at the head of the next question, in the same command
    while misses < call.cfg.max_tries:
        entry = await call.prompter.read([*sorry, RULE_PROMPT], max_digits=MAX_KEYS,
                                         keys=DIGITS + "*", end="#")
        sorry = []
        if not entry:
            misses += 1
            sorry = [NO_INPUT_PROMPT]
            continue
        try:
            amount = parse_keypad(entry)
        except AmountTooLarge:
            misses += 1
            call.note("amount-too-large")
            sorry = [TOO_LARGE_PROMPT]
            continue
        except AmountError:
            misses += 1
            call.note("amount-invalid")
            sorry = [KEYPAD_RULE_PROMPT]
            continue
        if amount <= 0:
            misses += 1
            call.note("amount-zero")
            sorry = [ZERO_PROMPT]
            continue
        if not call.ctx.allow_overpay and amount > balance_minor:
            misses += 1
            call.note("amount-over-balance")
            sorry = [*OVER_BALANCE_PROMPTS, *speech.money(balance_minor, call.lang)]
            continue
        key = await call.prompter.choose(
            [READ_BACK_PROMPT, *speech.money(amount, call.lang), CONFIRM_PROMPT], "12",
            back=True)
        if key == "1":
            call.note("amount-confirmed")
            return amount
        call.note("amount-reenter")
    await call.prompter.play(sorry)
    raise TooManyTries()
