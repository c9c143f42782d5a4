"""Config: defaults that run embedded, TOML then environment, plain-words problems."""

from __future__ import annotations

import os

import pytest

from ivr import cli, config
from ivr.app_hours import config_errors, config_problems


def test_defaults_are_embedded_loopback_and_secret_free(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no starpay.toml here
    cfg = config.load(environ={})
    assert cfg.source == "defaults"
    assert (cfg.agi.host, cfg.ami.host, cfg.web.host) == ("127.0.0.1",) * 3
    assert cfg.database.url.startswith("sqlite+aiosqlite://")
    assert cfg.payments.gateway == "sandbox"
    assert cfg.ami.secret == "" and cfg.web.secret == ""
    assert config_errors(cfg) == []


def test_file_then_environment(tmp_path) -> None:
    f = tmp_path / "starpay.toml"
    f.write_text('[agi]\nport = 4600\nheader_timeout = 2\n[call]\nverify = "never"\n'
                 '[payments]\ndaily_limit_minor = 1000\n')
    cfg = config.load(f, environ={"STARPAY_AGI_PORT": "4700", "STARPAY_CALL_LANGUAGES": "en,es,fr",
                                  "STARPAY_DATABASE_ECHO": "yes", "UNRELATED": "x"})
    assert cfg.agi.port == 4700  # environment wins over the file
    assert cfg.agi.header_timeout == 2.0 and isinstance(cfg.agi.header_timeout, float)
    assert cfg.call.verify == "never"
    assert cfg.call.languages == ["en", "es", "fr"]
    assert cfg.database.echo is True
    assert cfg.payments.daily_limit_minor == 1000
    assert cfg.source == str(f)


@pytest.mark.parametrize(("text", "words"), [
    ("[agi\nport = 1", "not valid TOML"),
    ("[nosuch]\nx = 1", "unknown section [nosuch]"),
    ("[agi]\nprot = 1", "unknown key agi.prot"),
    ('[agi]\nport = "4573"', "agi.port: expected int"),
])
def test_bad_files_say_what_is_wrong(tmp_path, text, words) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(config.ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        config.load(f, environ={})


def test_bad_environment_values_are_refused() -> None:
    with pytest.raises(config.ConfigError, match="STARPAY_AGI_PORT"):
        config.load(environ={"STARPAY_AGI_PORT": "many"})


def test_problems_in_plain_words() -> None:
    cfg = config.load(environ={"STARPAY_AGI_PORT": "70000", "STARPAY_CALL_VERIFY": "maybe",
                               "STARPAY_PAYMENTS_GATEWAY": "stripe",
                               "STARPAY_AGI_HOST": "0.0.0.0"})
    errors = config_errors(cfg)
    assert any("agi.port is 70000" in e for e in errors)
    assert any("call.verify" in e and "always, attested or never" in e for e in errors)
    assert any("STARPAY_PAYMENTS_STRIPE_API_KEY" in e for e in errors)
    notes = [p for p in config_problems(cfg) if p.startswith("note:")]
    assert any("agi.host = 0.0.0.0 is not loopback" in n for n in notes)


def test_config_check_command(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("STARPAY_")]:
        monkeypatch.delenv(var)
    assert cli.main(["config", "check"]) == 0
    assert "configuration OK" in capsys.readouterr().out
    monkeypatch.setenv("STARPAY_CALL_VERIFY", "maybe")
    assert cli.main(["config", "check"]) == 1
    assert "error: call.verify" in capsys.readouterr().out


def test_show_hides_secrets(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STARPAY_AMI_SECRET", "hunter2-very-secret")
    assert cli.main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2-very-secret" not in out and "********" in out
