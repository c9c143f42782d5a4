"""`ivr --help` and light commands start fast: building the parser loads no storage."""

from __future__ import annotations

import subprocess
import sys

from ivr.commands import payments
from ivr.storage import models

# Building the parser imports every ivr/commands/*.py module; those import storage,
# services, asyncio and the like inside the functions that run a command.
PROBE = """\
import sys
import ivr.cli
ivr.cli.build_parser()
print(" ".join(m for m in ("sqlalchemy", "asyncio", "ivr.storage", "ivr.services.hours")
               if m in sys.modules))
"""


def test_building_the_parser_loads_no_storage_nor_asyncio() -> None:
    # A fresh interpreter: this one has long since imported everything.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.split() == []


def test_payment_states_copy_matches_the_model() -> None:
    assert payments.PAYMENT_STATES == models.PAYMENT_STATES
