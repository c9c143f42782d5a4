"""`ivr qa run --target sip`: the project's scenarios as a real SIP phone's calls (sipp
through the session's Asterisk, as its QA endpoint, keys timed in advance). Scenarios a
recording cannot play are skipped with their reason; every other one must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.qa.report import describe
from ivr.qa.runner import run_scenarios
from ivr.qa.scenario import load_all
from tests.integration.test_sip_phone import sipp  # noqa: F401

pytestmark = pytest.mark.asterisk

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
# The one shipped scenario a recorded phone cannot play, and why.
SKIPPED = {"agent in business hours goes to the billing queue": "queue agent"}


async def test_every_scenario_a_recording_can_play_passes_on_the_sip_target(
        asterisk, sipp: str) -> None:  # noqa: F811
    scenarios = load_all([SCENARIOS])
    results = await run_scenarios(scenarios, "sip", instance=asterisk, jobs=8)
    assert len(results) == len(scenarios) >= 20
    assert {r.target for r in results} == {"sip"}
    skipped = {r.name: r.skipped for r in results if r.skipped is not None}
    assert skipped.keys() == SKIPPED.keys(), skipped
    for name, why in SKIPPED.items():
        assert why in (skipped[name] or ""), skipped[name]
    failed = [describe(r) for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    # The phone's caller ID and attestation reached the flow: a trusted caller's call
    # paid without typing an account number.
    trusted = next(r for r in results if r.name == "trusted caller ID pays the full balance")
    assert "ask_account" not in trusted.heard and "approved" in trusted.heard
