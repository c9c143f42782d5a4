"""Shared test plumbing. Fixtures for the real parts live in tests/fixtures/ as plugins."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.asterisk",
    "tests.fixtures.postgres",
]


def real_parts_required() -> bool:
    """In CI (and in `make test`) a missing real part fails the run instead of skipping."""
    return bool(os.environ.get("CI") or os.environ.get("STARPAY_REQUIRE_REAL"))


def missing_real_part(what: str, how: str) -> None:
    message = f"{what} is not available: {how}"
    if real_parts_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
