"""What one scenario run comes to: the Result every target returns and the report reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    # Why the target could not run this scenario (passed stays True: not a failure).
    skipped: str | None = None

    @property
    def name(self) -> str:
        return self.scenario.name


def unloadable(file: Path, message: str, target: str) -> Result:
    """A scenario file that could not be read or checked, reported as one failed scenario
    so the other files still run."""
    scenario = Scenario(name=f"{file.name} (could not be loaded)", file=file, caller=None,
                        attest=None, at=None, agents=0, seed="none", accounts=(), steps=())
    return Result(scenario, target, False, 0.0, "load", message)
