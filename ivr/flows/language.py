"""Step 1: answer, greet, settle the language.

The account's stored language is used only when caller ID is trusted: with an untrusted
number, greeting a caller in Spanish would tell them the number belongs to a Spanish-speaking
customer. Everyone else starts in the default language and may switch with 9; a caller who
did not choose gets their account's language once they are verified.
"""

from __future__ import annotations

from ivr.flows.context import Call

GREETING_PROMPTS = ["greeting", "language_offer"]
SWITCH_KEY = "9"


async def greet(call: Call) -> None:
    await call.session.answer()
    langs = {a.language for a in call.accounts_on_ani}
    start = langs.pop() if len(langs) == 1 else call.cfg.default_language
    await call.set_language(start)
    key = await call.prompter.play(GREETING_PROMPTS, escape=SWITCH_KEY)
    if key == SWITCH_KEY:
        await call.set_language(other_language(call))
        call.lang_chosen = True
        call.note(f"language:{call.lang}")


def other_language(call: Call) -> str:
    """The language the offer names: Spanish from English, the default otherwise."""
    if call.lang != call.cfg.default_language:
        return call.cfg.default_language
    others = [lang for lang in call.cfg.languages if lang != call.lang]
    return "es" if "es" in others else (others[0] if others else call.lang)


async def adopt_account_language(call: Call) -> None:
    """After verification: speak the account's language unless the caller chose one."""
    if call.account and not call.lang_chosen and call.account.language != call.lang:
        await call.set_language(call.account.language)
