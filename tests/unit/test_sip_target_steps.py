"""How the sip target turns a scenario's steps into a recording's timed entries, and how
it checks what was heard afterwards (ivr.qa.targets.sip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.qa.key_timeline import Step
from ivr.qa.report import summary
from ivr.qa.result import Result
from ivr.qa.scenario import Scenario, load
from ivr.qa.sip_phone import scenario_xml
from ivr.qa.steps import Failed
from ivr.qa.targets.sip import (
    AFTER_KEYS_S,
    HANGUP_AFTER_S,
    CannotPreTime,
    check_heard,
    timed_steps,
)


def _scenario(tmp_path: Path, steps: list, **extra: object) -> Scenario:
    doc = {"name": "s", "caller": "+15551234567", "steps": steps, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load(path)[0]


def test_expect_then_keys_is_one_entry_and_a_wait_times_them_from_the_prompt(
        tmp_path: Path) -> None:
    s = _scenario(tmp_path, [{"expect": ["greeting", "main_menu"]}, {"press": "1"},
                             {"expect": "pay_confirm_press"}, {"wait": 2}, {"wait": 1.5},
                             {"type": "1"}, {"expect": "approved"}])
    timed = timed_steps(s)
    assert timed.steps == [Step("main_menu", "1"), Step("pay_confirm_press", "1", 3.5)]
    assert not timed.hangs_up


def test_hangup_during_a_prompt_is_a_moment_with_no_keys(tmp_path: Path) -> None:
    s = _scenario(tmp_path, [{"expect": "main_menu"}, {"press": "1"},
                             {"expect": "pay_confirm_press"}, "hangup"])
    timed = timed_steps(s)
    assert timed.steps[-1] == Step("pay_confirm_press", "", HANGUP_AFTER_S)
    assert timed.hangs_up and timed.after_keys_s is None


def test_hangup_right_after_keys_is_timed_from_them(tmp_path: Path) -> None:
    s = _scenario(tmp_path, [{"expect": "main_menu"}, {"press": "1"}, {"wait": 2},
                             "hangup"])
    timed = timed_steps(s)
    assert timed.steps == [Step("main_menu", "1")]
    assert timed.after_keys_s == 2 + AFTER_KEYS_S


@pytest.mark.parametrize("steps, extra, why", [
    ([{"press": "1"}], {}, "follows no expect"),
    ([{"expect": "main_menu"}, {"press": "1"}, {"press": "2"}], {}, "follows no expect"),
    ([{"expect": "main_menu"}], {"agents": 1}, "queue agent"),
])
def test_what_a_recording_cannot_play_is_refused_with_the_reason(
        tmp_path: Path, steps: list, extra: dict, why: str) -> None:
    with pytest.raises(CannotPreTime, match=why):
        timed_steps(_scenario(tmp_path, steps, **extra))


def test_every_expect_is_checked_in_order_against_the_commands(tmp_path: Path) -> None:
    s = _scenario(tmp_path, [{"expect": "greeting"}, {"expect": "main_menu"},
                             {"press": "1"}])
    sent = ['STREAM FILE starpay/greeting ""',
            "EXEC Read STARPAY_KEYS,starpay/balance_is&starpay/main_menu,1,,1,5"]
    check_heard(s.steps, sent)
    with pytest.raises(Failed, match="main_menu.*not heard; heard after the previous "
                       "expect: nothing"):
        check_heard(s.steps, sent[:1])
    with pytest.raises(Failed, match="expect: main_menu"):
        check_heard(s.steps, sent[::-1])  # main_menu before the greeting: out of order


def test_the_qa_headers_go_on_both_invites_and_bad_ones_are_refused() -> None:
    xml = scenario_xml(Path("keys.pcap"), user="qa-phone", hold_s=5,
                       headers={"X-QA-Caller": "+15551234567", "X-QA-Attest": "A"})
    assert xml.count("X-QA-Caller: +15551234567") == 3  # both INVITEs and the ACK
    with pytest.raises(ValueError):
        scenario_xml(Path("k"), user="u", hold_s=1, headers={"X-QA": "a\r\nBYE x"})


def test_a_skipped_scenario_is_counted_apart(tmp_path: Path) -> None:
    s = _scenario(tmp_path, [{"expect": "main_menu"}])
    results = [Result(s, "sip", True, 1.0), Result(s, "sip", True, 0.0, skipped="why"),
               Result(s, "sip", False, 1.0)]
    assert summary(results) == "1 passed, 1 failed, 1 skipped"
