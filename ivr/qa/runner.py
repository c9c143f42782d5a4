"""Run call scenarios (ivr/qa/scenario.py) against the real pay flow, on one of three
targets: ``emulator`` (ivr/qa/targets/emulator.py, no PBX), ``asterisk``
(ivr/qa/targets/asterisk.py, a real Asterisk) or ``sip`` (ivr/qa/targets/sip.py, a real
SIP phone through a real Asterisk). Each scenario gets its own world
(ivr/qa/world.py); scenarios run ``jobs`` at a time. The report is ivr/qa/report.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ivr.asterisk.local import LocalAsterisk
from ivr.config import Config
from ivr.qa.result import Result
from ivr.qa.scenario import Scenario
from ivr.qa.targets.asterisk import AsteriskRunner
from ivr.qa.targets.base import Runner
from ivr.qa.targets.emulator import EmulatorRunner
from ivr.qa.targets.sip import SipRunner

TARGETS = ("emulator", "asterisk", "sip")


async def run_scenarios(scenarios: Sequence[Scenario], target: str = "emulator", *,
                        jobs: int | None = None, instance: LocalAsterisk | None = None,
                        on_result: Callable[[Result], None] | None = None,
                        config: Config | None = None) -> list[Result]:
    if target == "emulator":
        runner: Runner = EmulatorRunner(jobs=jobs or 8, config=config)
    elif target == "asterisk":
        runner = AsteriskRunner(instance, jobs=jobs or 16, config=config)
    elif target == "sip":
        runner = SipRunner(instance, jobs=jobs or 6, config=config)
    else:
        raise ValueError(f"target is one of {TARGETS}, not {target!r}")
    async with runner:
        return await runner.run(scenarios, on_result)
