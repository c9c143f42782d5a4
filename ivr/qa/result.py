"""What one scenario run comes to: the Result every target returns and the report reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from ivr.qa.scenario import Scenario


@dataclass
class Result:
    scenario: Scenario
    target: str
    passed: bool
    seconds: float
    step: str | None = None  # the step (or "expect: ...") that failed
    message: str = ""
    heard: list[str] = field(default_factory=list)  # every prompt id played in the call

    @property
    def name(self) -> str:
        return self.scenario.name
