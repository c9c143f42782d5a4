"""The *PAY call end to end: FakeAsterisk → real AGIServer → pay flow → real services on
SQLite with the sandbox gateway. Each test is one or two scripted calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from ivr.flows.agent import BUSY_CALLBACK_DELAY
from ivr.flows.hours_speech import describe_hours
from ivr.prompts import speech
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.services.payments import confirmation_number
from tests.unit.pay_world import (
    ALEX,
    CASEY,
    CLOSED,
    JORDAN,
    MARIA,
    MORGAN,
    OPEN,
    RILEY,
    SAM,
    STRANGER,
    TAYLOR,
    World,
    contains,
    make_world,
    played,
    plays,
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


async def test_happy_path_trusted_ani_pays_full_balance(world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"),
                            callerid=ALEX, attest="A")
    ids = played(fake)
    assert ids[:2] == ["greeting", "language_offer"]
    assert contains(ids, ["balance_is", *speech.money(8417, "en"), "balance_due"])
    assert contains(ids, ["pay_to_pay", *speech.money(8417, "en"), "pay_with_the",
                          "brand_visa", "ending_in", "digit_4", "digit_2", "digit_4",
                          "digit_2", "pay_confirm_press"])
    assert "approved" in ids and ids[-1] == "goodbye"
    (payment,) = await world.payments()
    assert payment.state == "approved" and payment.amount_minor == 8417
    assert await world.balance("100001") == 0
    rec = await world.last_record()
    assert rec.verified_how == "ani" and rec.outcome == "paid"
    assert rec.payment_id == payment.id and rec.ani == ALEX and rec.duration_s is not None
    print(ids, rec.path)


def sets(fake: FakeAsterisk) -> dict[str, str]:
    """Channel variables the flow set (the last value of each)."""
    return {c.arg(0): c.arg(1) for c in fake.transcript if c.verb == "SET VARIABLE"}


# --- identify and verify ---------------------------------------------------------------------


async def test_unknown_number_gives_account_number_and_zip(world: World) -> None:
    fake = await world.call(("ask_account", "100001#"), ("verify_zip", "10001"),
                            ("main_menu", "1"), ("pay_confirm_press", "1"),
                            callerid=STRANGER, attest="A")
    ids = played(fake)
    assert ids[:4] == ["greeting", "language_offer", "ask_account", "verify_zip"]
    assert "approved" in ids
    rec = await world.last_record()
    assert rec.verified_how == "zip" and rec.outcome == "paid"
    assert await world.balance("100001") == 0


async def test_withheld_number_is_asked_for_the_account(world: World) -> None:
    fake = await world.call(("ask_account", "100001#"), ("verify_zip", "99999"),
                            callerid="anonymous", attest="")
    ids = played(fake)
    assert ids[2:5] == ["ask_account", "verify_zip", "verify_failed"]
    assert "balance_is" not in ids
    rec = await world.last_record()
    assert rec.ani is None and rec.verified_how == "none"


async def test_wrong_account_number_is_said_and_retried(world: World) -> None:
    fake = await world.call(("ask_account", "424242#"), ("ask_account", "100001#"),
                            ("verify_zip", "10001"), ("main_menu", "0"), callerid=STRANGER)
    ids = played(fake)
    assert contains(ids, ["ask_account", "account_not_found", "ask_account", "verify_zip"])
    assert sets(fake)["STARPAY_ACCOUNT"] == "100001"


async def test_two_accounts_on_one_number_are_offered_by_last_digits(world: World) -> None:
    # A caller who knows the menu presses 2 at once and cuts it short.
    fake = await world.call(("accounts_several", "2"), ("main_menu", "1"),
                            ("pay_confirm_press", "1"), callerid=SAM)
    ids = played(fake)
    assert ids[2:4] == ["accounts_several", "balance_is"]
    assert contains(ids, ["balance_is", *speech.money(12050, "en")])
    (payment,) = await world.payments()
    assert payment.amount_minor == 12050 and await world.balance("100003") == 0
    rec = await world.last_record()
    assert rec.path[0] == "account-choice:2"


async def test_two_accounts_menu_is_heard_in_full_before_choosing(world: World) -> None:
    # Silent through the whole menu once, then 1 (which cuts the repeated menu short; the
    # "sorry" before it and the menu are one command, so a 1 there would count as well).
    fake = await world.call(("no_input", ""), ("account_ending_in", "1"), ("main_menu", "0"),
                            callerid=SAM)
    ids = played(fake)
    assert contains(ids, ["accounts_several", "account_ending_in", *speech.digits("0002"),
                          "press", "digit_1", "account_ending_in", *speech.digits("0003"),
                          "press", "digit_2", "no_input", "account_ending_in"])
    assert contains(ids, ["balance_is", *speech.money(4500, "en")])
    assert sets(fake)["STARPAY_ACCOUNT"] == "100002"


@pytest.mark.parametrize("known", [ALEX, MARIA, SAM])
@pytest.mark.parametrize("attest", ["B", "C", ""])
async def test_spoofed_number_learns_nothing_before_verification(
        tmp_path: Path, known: str, attest: str) -> None:
    # Same keys from a customer's number and a stranger's, each on a fresh database: a
    # wrong account, then a real account number with wrong ZIPs, then the agent path.
    # Every command the service sends must be the same.
    steps = (("ask_account", "12#"), ("ask_account", "100001#"), ("verify_zip", "55555"),
             ("verify_zip", "55555"), ("verify_zip", "55555"))
    async with make_world(tmp_path / "a") as a, make_world(tmp_path / "b") as b:
        on_file = await a.call(*steps, callerid=known, attest=attest)
        stranger = await b.call(*steps, callerid=STRANGER, attest=attest)
    assert [c.raw for c in on_file.transcript] == [c.raw for c in stranger.transcript]
    assert "verify_failed" in played(on_file)
    assert "CHANNEL(language)" in sets(on_file) and sets(on_file)["CHANNEL(language)"] == "en"


async def test_untrusted_number_verified_by_zip_then_hears_balance(world: World) -> None:
    fake = await world.call(("ask_account", "100001#"), ("verify_zip", "10001"),
                            ("main_menu", "0"), callerid=ALEX, attest="B")
    ids = played(fake)
    assert ids[2:4] == ["ask_account", "verify_zip"]
    assert "balance_is" in ids
    assert (await world.last_record()).verified_how == "zip"


async def test_verify_never_ignores_attestation(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify="never") as w:
        fake = await w.call(("ask_account", "100001#"), ("verify_zip", "10001"),
                            ("main_menu", "0"), callerid=ALEX, attest="A")
        assert played(fake)[2:4] == ["ask_account", "verify_zip"]


async def test_verify_always_trusts_unattested_ani(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify="always") as w:
        fake = await w.call(("main_menu", "0"), callerid=ALEX, attest="")
        assert "ask_account" not in played(fake) and "balance_is" in played(fake)
        assert (await w.last_record()).verified_how == "ani"


async def test_five_failures_lock_phone_verification(world: World) -> None:
    wrong = (("ask_account", "100001#"), ("verify_zip", "11111"), ("verify_zip", "22222"),
             ("verify_zip", "33333"))
    first = await world.call(*wrong, callerid=STRANGER, attest="")
    assert played(first).count("verify_failed") == 3
    assert sets(first)["STARPAY_NEXT"] == "queue"  # three misses: a person
    assert sets(first)["STARPAY_ACCOUNT"] == ""  # never verified: no account for the agent
    second = await world.call(*wrong[:3], callerid=STRANGER, attest="")
    ids = played(second)
    assert ids.count("verify_failed") == 1 and "verify_locked" in ids  # 4th, then 5th
    assert (await world.last_record()).outcome == "agent"
    # Locked: even the right ZIP does not get in for 30 minutes.
    third = await world.call(("ask_account", "100001#"), ("verify_zip", "10001"),
                             callerid=STRANGER, attest="")
    assert "verify_locked" in played(third) and "balance_is" not in played(third)
    world.agents = False
    fourth = await world.call(("ask_account", "100001#"), ("verify_zip", "10001"),
                              callerid=STRANGER, attest="")
    assert played(fourth)[-2:] == ["verify_locked_closed", "goodbye"]
    assert (await world.last_record()).outcome == "locked"
    assert await world.payments() == []


# --- balance ------------------------------------------------------------------------------------


async def test_zero_balance_says_so_and_ends(world: World) -> None:
    fake = await world.call(callerid=MORGAN)
    ids = played(fake)
    assert ids[2:] == ["balance_zero", "goodbye"]
    assert fake.verbs()[-1] == "HANGUP"
    assert (await world.last_record()).outcome == "no-balance"


async def test_past_due_says_so(world: World) -> None:
    fake = await world.call(("main_menu", "0"), callerid=TAYLOR)
    ids = played(fake)
    assert ids[2:4] == ["balance_past_due", "balance_is"]
    assert contains(ids, ["balance_is", *speech.money(15025, "en"), "balance_due"])


async def test_menu_3_repeats_the_balance(world: World) -> None:
    fake = await world.call(("main_menu", "3"), ("main_menu", "0"), callerid=ALEX)
    assert played(fake).count("balance_is") == 2
    assert (await world.last_record()).path[:2] == ["menu:3", "menu:0"] or \
        "menu:3" in (await world.last_record()).path


# --- other amount -------------------------------------------------------------------------------


async def test_other_amount_is_read_back_and_over_balance_explained(world: World) -> None:
    fake = await world.call(("main_menu", "2"), ("amount_rule", "100*00#"),
                            ("amount_rule", "20*5#"), ("amount_confirm", "1"),
                            ("pay_confirm_press", "1"), callerid=ALEX)
    ids = played(fake)
    assert contains(ids, ["limit_over_balance", "limit_most_today",
                          *speech.money(8417, "en")])
    assert contains(ids, ["you_entered", *speech.money(2050, "en"), "amount_confirm"])
    assert contains(ids, ["pay_to_pay", *speech.money(2050, "en"), "pay_with_the"])
    (payment,) = await world.payments()
    assert payment.amount_minor == 2050 and payment.state == "approved"
    assert await world.balance("100001") == 8417 - 2050


async def test_other_amount_bad_entry_and_reentry(world: World) -> None:
    fake = await world.call(("main_menu", "2"), ("amount_rule", "1*2*3#"),
                            ("amount_rule", "0#"), ("amount_rule", "5#"),
                            ("amount_confirm", "2"), ("amount_rule", "6#"),
                            ("amount_confirm", "1"), ("pay_confirm_press", "2"),
                            ("main_menu", "0"), callerid=ALEX)
    ids = played(fake)
    assert contains(ids, ["amount_rule", "amount_keypad_rule", "amount_rule", "limit_zero"])
    assert contains(ids, ["you_entered", *speech.money(500, "en"), "amount_confirm"])
    assert contains(ids, ["you_entered", *speech.money(600, "en"), "amount_confirm"])
    assert "pay_cancelled" in ids
    assert await world.payments() == []


async def test_an_amount_against_the_keypad_rule_is_answered_with_the_rule(
        world: World) -> None:
    """Three decimals is an amount typed wrong, not a wrong menu key: say the rule; an amount
    too large to take is said as such."""
    fake = await world.call(("main_menu", "2"), ("amount_rule", "1*005#"),
                            ("amount_rule", "1000000*01#"), ("amount_rule", "1*05#"),
                            ("amount_confirm", "1"), ("pay_confirm_press", "2"),
                            ("main_menu", "0"), callerid=ALEX)
    ids = played(fake)
    assert contains(ids, ["amount_rule", "amount_keypad_rule", "amount_rule",
                          "amount_too_large", "amount_rule"])
    assert "invalid_input" not in ids
    assert contains(ids, ["you_entered", *speech.money(105, "en"), "amount_confirm"])
    assert await world.payments() == []


async def test_star_in_confirmation_goes_back_to_the_menu(world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "*"),
                            ("main_menu", "0"), callerid=ALEX)
    assert played(fake).count("main_menu") == 2
    assert await world.payments() == []


# --- card on file -------------------------------------------------------------------------------


@pytest.mark.parametrize("phone,prompt,account", [(JORDAN, "card_none", "100004"),
                                                   (CASEY, "card_expired", "100005")])
async def test_no_usable_card_offers_an_agent(world: World, phone: str, prompt: str,
                                              account: str) -> None:
    fake = await world.call(("main_menu", "1"), callerid=phone)
    ids = played(fake)
    assert ids[-2:] == [prompt, "agent_transfer"]
    assert sets(fake)["STARPAY_NEXT"] == "queue"
    assert sets(fake)["STARPAY_ACCOUNT"] == account
    assert await world.payments() == []


# --- results ------------------------------------------------------------------------------------


async def test_approved_confirmation_can_be_repeated_and_receipt_recorded(
        world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"),
                            ("repeat_press_1", "1"), callerid=ALEX)
    ids = played(fake)
    (payment,) = await world.payments()
    digits = speech.digits(confirmation_number(payment.id))
    assert contains(ids, ["confirmation_number", *digits, "receipt_text", "repeat_press_1",
                          *["approved", "confirmation_number", *digits], "repeat_press_1"])
    rec = await world.last_record()
    assert rec.details["receipt_sms"]["status"] == "queued"  # tests/unit/test_sms_receipts.py


async def test_decline_gives_reason_and_back_to_menu(world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"),
                            ("main_menu", "0"), callerid=RILEY)
    ids = played(fake)
    assert contains(ids, ["declined", "declined_insufficient_funds"])
    assert ids.count("main_menu") == 2
    (payment,) = await world.payments()
    assert payment.state == "declined"
    assert await world.balance("100009") == 5800
    rec = await world.last_record()
    assert rec.payment_id == payment.id and rec.outcome == "agent"


async def test_processor_trouble_says_being_checked_and_never_charges_twice(
        world: World) -> None:
    await world.add_account("200001", "+15550001111", "tok_sandbox_timeout_after_charge")
    steps = (("main_menu", "1"), ("pay_confirm_press", "1"))
    fake = await world.call(*steps, callerid="+15550001111", uniqueid="1700000000.77")
    assert played(fake)[-2:] == ["processing", "goodbye"]
    # Asterisk runs the AGI again on the same channel: the same key replays the payment.
    again = await world.call(*steps, callerid="+15550001111", uniqueid="1700000000.77")
    assert played(again)[-2:] == ["processing", "goodbye"]
    (payment,) = await world.payments()
    assert payment.state == "unknown"
    assert world.gateway.approved_charges() == {payment.idempotency_key: 5000}
    assert [r.outcome for r in await world.records()] == ["pending", "pending"]


# --- agent, after hours -------------------------------------------------------------------------


async def test_agent_in_hours_goes_to_the_queue_with_the_account(world: World) -> None:
    fake = await world.call(("main_menu", "0"), callerid=ALEX)
    assert played(fake)[-1] == "agent_transfer"
    assert sets(fake) == {"CHANNEL(language)": "en", "STARPAY_ACCOUNT": "100001",
                          "STARPAY_NEXT": "queue"}
    assert "HANGUP" not in fake.verbs()  # the dialplan queues the caller
    assert fake.agi_status == "SUCCESS"
    assert (await world.last_record()).outcome == "agent"


async def test_after_hours_callback_is_stored_for_the_next_opening(world: World) -> None:
    world.now = CLOSED
    fake = await world.call(("main_menu", "0"), ("callback_offer", "1"), callerid=ALEX)
    ids = played(fake)
    assert contains(ids, ["after_hours", "hours_are",
                          *describe_hours(world.ctx.hours, "en"), "callback_offer"])
    assert ids[-2:] == ["callback_scheduled", "goodbye"]
    (cb,) = await world.callbacks()
    assert cb.number == ALEX and cb.status == "pending"
    assert cb.due_at.replace(tzinfo=UTC) == world.ctx.hours.next_opening(CLOSED)
    assert cb.account_id is not None
    assert (await world.last_record()).outcome == "callback"


async def test_after_hours_voicemail(world: World) -> None:
    world.now = CLOSED
    fake = await world.call(("main_menu", "0"), ("callback_offer", "2"), callerid=ALEX)
    assert sets(fake)["STARPAY_NEXT"] == "voicemail"
    assert await world.callbacks() == []
    assert (await world.last_record()).outcome == "voicemail"


async def test_open_but_every_agent_busy_says_so_and_calls_back_in_the_minutes_it_says(
        world: World) -> None:
    world.agents = False
    fake = await world.call(("main_menu", "0"), ("callback_in_keys", "1"), callerid=ALEX)
    ids = played(fake)
    minutes = int(BUSY_CALLBACK_DELAY.total_seconds()) // 60
    assert "after_hours" not in ids and "callback_offer" not in ids
    assert contains(ids, ["agents_busy", "callback_in_offer", *speech.minutes(minutes, "en"),
                          "callback_in_keys"])
    assert ids[-len(speech.minutes(minutes, "en")) - 2:] == [
        "callback_scheduled_in", *speech.minutes(minutes, "en"), "goodbye"]
    assert "callback_scheduled" not in ids  # "after we open" would not be true
    (cb,) = await world.callbacks()
    assert cb.due_at.replace(tzinfo=UTC) == OPEN + BUSY_CALLBACK_DELAY


async def test_agents_busy_in_spanish_says_the_minutes_in_spanish(world: World) -> None:
    world.agents = False
    fake = await world.call(("main_menu", "0"), ("callback_in_keys", "1"), callerid=MARIA)
    ids = played(fake)
    assert contains(ids, ["callback_in_offer", "num_15", "minutes", "callback_in_keys"])
    assert contains(ids, ["callback_scheduled_in", "num_15", "minutes", "goodbye"])


async def test_agents_busy_just_before_closing_calls_back_at_the_next_opening(
        world: World) -> None:
    # 19:50 in New York: fifteen minutes on, the center is closed.
    world.now = CLOSING = datetime(2026, 12, 3, 0, 50, tzinfo=UTC)
    world.agents = False
    fake = await world.call(("main_menu", "0"), ("callback_offer", "1"), callerid=ALEX)
    ids = played(fake)
    assert contains(ids, ["agents_busy", "closing_soon", "callback_offer"])
    assert ids[-2:] == ["callback_scheduled", "goodbye"]
    (cb,) = await world.callbacks()
    assert cb.due_at.replace(tzinfo=UTC) == world.ctx.hours.next_opening(CLOSING)


async def test_ami_trouble_counts_as_no_agent(world: World) -> None:
    async def broken() -> bool:
        raise ConnectionError("AMI is down")

    world.ctx.agents_available = broken
    fake = await world.call(("main_menu", "0"), ("callback_in_offer", "2"), callerid=ALEX)
    assert "agents_busy" in played(fake) and sets(fake)["STARPAY_NEXT"] == "voicemail"


async def test_our_own_failure_falls_back_to_the_dialplan(world: World) -> None:
    async with world.db.session() as s:  # break the database under the running service
        await s.execute(text("DROP TABLE statements"))
    fake = await world.call(callerid=ALEX)
    # AGISTATUS=FAILURE: the dialplan's fallback apologises and finds people.
    assert fake.agi_status == "FAILURE"
    assert "STARPAY_NEXT" not in sets(fake)
    assert (await world.last_record()).outcome == "error"


async def test_three_invalid_entries_lead_to_the_agent_path(world: World) -> None:
    fake = await world.call(("main_menu", "5"), ("main_menu", "7"), ("main_menu", "#"),
                            callerid=ALEX)
    ids = played(fake)
    assert ids.count("invalid_input") == 3
    assert ids[-1] == "agent_transfer" and sets(fake)["STARPAY_NEXT"] == "queue"


async def test_silence_three_times_leads_to_the_agent_path(world: World) -> None:
    world.now = CLOSED
    fake = await world.call(callerid=ALEX)  # never presses anything
    ids = played(fake)
    assert ids.count("no_input") >= 3
    # After hours the callback choice is also unanswered: voicemail, never silence.
    assert sets(fake)["STARPAY_NEXT"] == "voicemail"


# --- hang-ups -----------------------------------------------------------------------------------


async def test_hangup_before_confirming_charges_nothing(world: World) -> None:
    fake = await world.call(("main_menu", "1"), callerid=ALEX,
                            hangup_at=plays("pay_confirm_press"))
    assert fake.agi_status in ("HANGUP", "SUCCESS")
    assert await world.payments() == []
    assert await world.balance("100001") == 8417
    rec = await world.last_record()
    assert rec.outcome == "hangup" and rec.path[-1] == "hangup"


async def test_hangup_right_after_confirming_still_records_the_payment_once(
        world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"), callerid=ALEX,
                            hangup_at=plays("approved"))
    assert "approved" in played(fake)
    (payment,) = await world.payments()
    assert payment.state == "approved"
    assert world.gateway.approved_charges() == {payment.idempotency_key: 8417}
    rec = await world.last_record()
    assert rec.outcome == "paid" and rec.payment_id == payment.id
    assert rec.path[-1] == "hangup"


# --- language -----------------------------------------------------------------------------------


async def test_spanish_account_hears_spanish(world: World) -> None:
    fake = await world.call(("main_menu", "0"), callerid=MARIA)
    first = fake.transcript[1]
    assert first.verb == "SET VARIABLE" and first.args == ("CHANNEL(language)", "es")
    assert contains(played(fake), ["balance_is", *speech.money(7340, "es")])
    assert (await world.last_record()).language == "es"


async def test_nine_switches_to_spanish(world: World) -> None:
    fake = await world.call(("language_offer", "9"), ("main_menu", "0"), callerid=ALEX)
    assert sets(fake)["CHANNEL(language)"] == "es"
    assert contains(played(fake), ["balance_is", *speech.money(8417, "es")])


async def test_verified_caller_gets_account_language(world: World) -> None:
    fake = await world.call(("ask_account", "100008#"), ("verify_zip", "33101"),
                            ("main_menu", "0"), callerid=STRANGER, attest="")
    langs = [c.arg(1) for c in fake.transcript
             if c.verb == "SET VARIABLE" and c.arg(0) == "CHANNEL(language)"]
    assert langs == ["en", "es"]
