"""``[call] verify_with``: ZIP, PIN, or either, on real *PAY calls (FakeAsterisk → AGIServer →
pay flow → real services on SQLite), one lockout counter for both, and the config and
scenario hooks that choose it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.config import CallConfig, Config, load
from ivr.qa.runner import run_scenarios
from ivr.qa.scenario import ScenarioError, load_all
from ivr.qa.scenario import load as load_scenario
from ivr.services.accounts import AccountService, VerifyResult
from ivr.storage.models import Account
from tests.unit.pay_world import ALEX, OPEN, STRANGER, World, contains, make_world, played


async def failed_attempts(world: World, number: str) -> int:
    async with world.db.session() as s:
        return (await s.execute(select(Account.failed_attempts).where(
            Account.account_number == number))).scalar_one()


# --- config ----------------------------------------------------------------------------------


def test_verify_with_defaults_to_zip_and_is_checked() -> None:
    assert CallConfig().verify_with == "zip"
    assert not Config().errors()
    for good in ("zip", "pin", "zip_or_pin"):
        assert not Config(call=CallConfig(verify_with=good)).errors()
    (problem,) = Config(call=CallConfig(verify_with="pin_or_zip")).errors()
    assert "call.verify_with" in problem and "zip_or_pin" in problem


def test_verify_with_from_file_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "starpay.toml"
    file.write_text('[call]\nverify_with = "pin"\n')
    assert load(file, environ={}).call.verify_with == "pin"
    env = {"STARPAY_CALL_VERIFY_WITH": "zip_or_pin"}
    assert load(file, environ=env).call.verify_with == "zip_or_pin"


# --- the account view ------------------------------------------------------------------------


async def test_account_view_says_whether_a_pin_is_set(tmp_path: Path) -> None:
    async with make_world(tmp_path) as w:
        await w.add_account("200001", "+15550001111", "tok_sandbox_approve")  # no PIN
        accounts = AccountService(w.db)
        alex = await accounts.by_number("100001")
        assert alex is not None and alex.has_pin
        fresh = await accounts.by_number("200001")
        assert fresh is not None and not fresh.has_pin
        assert [a.has_pin for a in await accounts.by_phone("+15551234568")] == [True, True]
        got = await accounts.get(fresh.id)
        assert got is not None and not got.has_pin


# --- calls -----------------------------------------------------------------------------------


async def test_zip_setting_asks_the_zip_even_when_a_pin_is_set(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="zip") as w:
        fake = await w.call(("ask_account", "100001#"), ("verify_zip", "10001"),
                            ("main_menu", "0"), callerid=STRANGER)
        assert "verify_pin" not in played(fake) and "balance_is" in played(fake)
        assert (await w.last_record()).verified_how == "zip"


async def test_pin_right_then_pays(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="pin") as w:
        fake = await w.call(("ask_account", "100001#"), ("verify_pin", "1234#"),
                            ("main_menu", "1"), ("pay_confirm_press", "1"),
                            callerid=STRANGER)
        ids = played(fake)
        assert ids[2:4] == ["ask_account", "verify_pin"] and "verify_zip" not in ids
        assert "approved" in ids
        rec = await w.last_record()
        assert rec.verified_how == "pin" and rec.outcome == "paid"
        assert await w.balance("100001") == 0


async def test_pin_wrong_then_right(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="pin") as w:
        # The Read for a 4-digit PIN ends on the 4th key, so no "#" after a wrong PIN: a
        # scripted caller's # would wait for the next question and cut it at once.
        fake = await w.call(("ask_account", "100001#"), ("verify_pin", "9999"),
                            ("verify_pin", "1234#"), ("main_menu", "0"), callerid=STRANGER)
        ids = played(fake)
        assert contains(ids, ["verify_pin", "verify_failed", "verify_pin"])
        assert "balance_is" in ids
        rec = await w.last_record()
        assert rec.verified_how == "pin"
        assert rec.path.count("verify-failed") == 1
        assert await failed_attempts(w, "100001") == 0  # the right PIN clears the miss


async def test_the_zip_is_no_answer_at_the_pin_prompt(tmp_path: Path) -> None:
    # "pin" means the PIN: five digits end nothing early and are not taken as a ZIP.
    async with make_world(tmp_path, verify_with="pin") as w:
        fake = await w.call(("ask_account", "100001#"), ("verify_pin", "1000"),
                            ("verify_pin", "1234"), ("main_menu", "0"), callerid=STRANGER)
        assert contains(played(fake), ["verify_pin", "verify_failed", "verify_pin"])
        assert (await w.last_record()).verified_how == "pin"


async def test_pin_setting_asks_the_zip_of_an_account_without_pin(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="pin") as w:
        await w.add_account("200001", "+15550001111", "tok_sandbox_approve")
        fake = await w.call(("ask_account", "200001#"), ("verify_zip", "12345"),
                            ("main_menu", "0"), callerid=STRANGER)
        ids = played(fake)
        assert "verify_zip" in ids and "verify_pin" not in ids and "balance_is" in ids
        assert (await w.last_record()).verified_how == "zip"


@pytest.mark.parametrize("keys, how", [("10001", "zip"), ("1234#", "pin"), ("1234", "pin")])
async def test_zip_or_pin_takes_either(tmp_path: Path, keys: str, how: str) -> None:
    async with make_world(tmp_path, verify_with="zip_or_pin") as w:
        fake = await w.call(("ask_account", "100001#"), ("verify_pin_or_zip", keys),
                            ("main_menu", "0"), callerid=ALEX, attest="B")
        ids = played(fake)
        assert ids[2:4] == ["ask_account", "verify_pin_or_zip"] and "balance_is" in ids
        assert (await w.last_record()).verified_how == how


async def test_zip_or_pin_asks_the_zip_of_an_account_without_pin(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="zip_or_pin") as w:
        await w.add_account("200001", "+15550001111", "tok_sandbox_approve")
        fake = await w.call(("ask_account", "200001#"), ("verify_zip", "12345"),
                            ("main_menu", "0"), callerid=STRANGER)
        assert "verify_pin_or_zip" not in played(fake) and "balance_is" in played(fake)


async def test_zip_or_pin_short_entry_is_a_fumble_not_a_guess(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="zip_or_pin") as w:
        fake = await w.call(("ask_account", "100001#"), ("verify_pin_or_zip", "123#"),
                            ("verify_pin_or_zip", "10001"), ("main_menu", "0"),
                            callerid=STRANGER)
        assert contains(played(fake), ["verify_pin_or_zip", "invalid_input",
                                        "verify_pin_or_zip"])
        rec = await w.last_record()
        assert "verify-short" in rec.path and "verify-failed" not in rec.path


async def test_zip_and_pin_failures_share_one_lockout(tmp_path: Path) -> None:
    async with make_world(tmp_path, verify_with="zip_or_pin") as w:
        # Three wrong ZIPs: the call goes to an agent, three misses stay on the account.
        first = await w.call(("ask_account", "100001#"), ("verify_pin_or_zip", "11111"),
                             ("verify_pin_or_zip", "22222"), ("verify_pin_or_zip", "33333"),
                             callerid=STRANGER, attest="")
        assert played(first).count("verify_failed") == 3
        assert await failed_attempts(w, "100001") == 3
        # Two wrong PINs: the 4th miss is refused, the 5th locks.
        second = await w.call(("ask_account", "100001#"), ("verify_pin_or_zip", "1111#"),
                              ("verify_pin_or_zip", "2222#"), callerid=STRANGER, attest="")
        ids = played(second)
        assert ids.count("verify_failed") == 1 and "verify_locked" in ids
        assert (await w.last_record()).path[-1:] != ["verified:pin"]
        # Locked: the right PIN and the right ZIP both stay out.
        for keys in ("1234#", "10001"):
            locked = await w.call(("ask_account", "100001#"), ("verify_pin_or_zip", keys),
                                  callerid=STRANGER, attest="")
            assert "verify_locked" in played(locked) and "balance_is" not in played(locked)
        assert await w.payments() == []


async def test_accounts_service_counts_zip_and_pin_misses_together(tmp_path: Path) -> None:
    async with make_world(tmp_path) as w:
        accounts = AccountService(w.db)
        alex, sam = await accounts.by_number("100001"), await accounts.by_number("100002")
        assert alex is not None and sam is not None

        async def attempt(account_id: int = alex.id, **answer: str) -> VerifyResult:
            return await accounts.verify(account_id, max_failures=5, lockout_minutes=30,
                                         now=OPEN, **answer)

        answers: list[dict[str, str]] = [{"zip_code": "11111"}, {"pin": "1111"},
                                         {"zip_code": "22222"}, {"pin": "2222"}]
        for answer in answers:
            assert not (r := await attempt(alex.id, **answer)).ok and not r.locked
        assert r.attempts_left == 1
        last = await attempt(pin="3333")
        assert last.locked and last.locked_until is not None
        assert not (await attempt(pin="1234")).ok  # right, but locked
        assert not (await attempt(zip_code="10001")).ok
        # A right answer of either kind before the limit clears the other kind's misses.
        for _ in range(4):
            assert not (await attempt(sam.id, zip_code="11111")).ok
        assert (await attempt(sam.id, pin="2468")).ok
        for _ in range(4):
            assert not (r := await attempt(sam.id, pin="1111")).locked
        assert r.attempts_left == 1


# --- scenarios -------------------------------------------------------------------------------

SCENARIO = """
name: pin scenario
caller: "+15557654321"
attest: A
at: "10:00"
call: {verify_with: pin}
steps:
  - expect: ask_account
  - press: "100001#"
  - expect: verify_pin
  - press: "1234#"
  - expect: balance_is
  - hangup
expect:
  call_outcome: hangup
"""


def test_scenario_call_settings_are_parsed_and_checked(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(SCENARIO)
    (s,) = load_scenario(file)
    assert s.call == {"verify_with": "pin"}
    base = CallConfig(max_tries=2)
    assert s.call_config(base) == CallConfig(max_tries=2, verify_with="pin")
    assert base.verify_with == "zip"  # the run's own config is not changed
    for bad, words in (("{verify_with: pn}", "call.verify_with"),
                       ("{verify_by: pin}", "no [call] setting"),
                       ("{max_tries: '3'}", "expected int"),
                       ("pin", "mapping")):
        file.write_text(SCENARIO.replace("{verify_with: pin}", bad))
        with pytest.raises(ScenarioError, match=words.replace("[", r"\[")):
            load_scenario(file)


async def test_scenario_call_settings_reach_the_call(tmp_path: Path) -> None:
    with_pin = tmp_path / "a.yaml"
    with_pin.write_text(SCENARIO)
    without = tmp_path / "b.yaml"  # the same steps on the default config: asked the ZIP
    without.write_text(SCENARIO.replace("call: {verify_with: pin}\n", "")
                       .replace("name: pin scenario", "name: default"))
    ok, default = await run_scenarios(load_all([with_pin, without]), "emulator", jobs=2)
    assert ok.passed, ok.message
    assert not default.passed and "verify_zip" in default.heard
