"""The [sms] section: defaults that run embedded, and each bad value named in words."""

from __future__ import annotations

import pytest

from ivr.config import ConfigError, load


def test_defaults_run_embedded_and_are_fine() -> None:
    cfg = load(environ={})
    assert (cfg.sms.transport, cfg.sms.rate_per_second, cfg.sms.confirm) == ("outbox", 1.0,
                                                                             False)
    assert (cfg.sms.quiet_start, cfg.sms.quiet_end, cfg.sms.notice_window_days) == (
        "21:00", "08:00", 14)
    assert not [p for p in cfg.problems() if p.startswith("sms.")]


@pytest.mark.parametrize(("var", "value", "says"), [
    ("STARPAY_SMS_TRANSPORT", "pigeon", "sms.transport"),
    ("STARPAY_SMS_SENDER", "5551234567", "sms.sender"),
    ("STARPAY_SMS_RATE_PER_SECOND", "0", "sms.rate_per_second"),
    ("STARPAY_SMS_QUIET_START", "9pm", "sms.quiet_start"),
    ("STARPAY_SMS_NOTICE_WINDOW_DAYS", "0", "sms.notice_window_days"),
])
def test_bad_values_are_named(var: str, value: str, says: str) -> None:
    try:
        cfg = load(environ={var: value})
    except ConfigError as exc:  # a value of the wrong type
        pytest.fail(f"{var}={value} did not load: {exc}")
    assert any(p.startswith(says) for p in cfg.errors()), cfg.errors()
