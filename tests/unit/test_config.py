"""Config: defaults that run embedded, TOML then environment, plain-words problems."""

from __future__ import annotations

import json
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


def test_a_missing_file_named_by_starpay_config_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nosuch.toml"
    with pytest.raises(config.ConfigError, match="nosuch.toml does not exist"):
        config.load(environ={"STARPAY_CONFIG": str(missing)})
    with pytest.raises(config.ConfigError, match="nosuch.toml does not exist"):
        config.load(missing, environ={})


def test_an_unknown_variable_is_named_with_the_closest_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(config.ConfigError) as err:
        config.load(environ={"STARPAY_AGI_PROT": "4600"})
    assert err.value.errors == [err.value.errors[0]]
    assert "STARPAY_AGI_PROT is not a StarPay setting" in str(err.value)
    assert "did you mean STARPAY_AGI_PORT?" in str(err.value)
    with pytest.raises(config.ConfigError, match="STARPAY_NOTHING_LIKE_IT is not"):
        config.load(environ={"STARPAY_NOTHING_LIKE_IT": "1"})


def test_the_projects_own_variables_are_not_settings_yet_allowed(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.load(environ={"STARPAY_REQUIRE_REAL": "1", "STARPAY_DEBIAN_MIRROR": "x",
                               "STARPAY_TEST_PAUSE_AFTER_GATEWAY": "2",
                               "STARPAY_ASTERISK_ROOT": "/srv/root"})
    assert cfg.asterisk.root == "/srv/root" and cfg.source == "defaults"


def test_every_error_is_reported_at_once(tmp_path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[agi]\nprot = 1\nport = "x"\n[nosuch]\na = 1\n[web]\nport = 9000\n')
    with pytest.raises(config.ConfigError) as err:
        config.load(f, environ={"STARPAY_AMI_PORT": "many", "STARPAY_CALL_VERIFYY": "never"})
    errors = err.value.errors
    assert len(errors) == 5, errors
    text = str(err.value)
    assert text.startswith("5 problems:")
    for words in ("unknown key agi.prot; did you mean agi.port?", "agi.port: expected int",
                  "unknown section [nosuch]", "STARPAY_AMI_PORT: 'many' is not a whole number",
                  "STARPAY_CALL_VERIFYY is not a StarPay setting; did you mean "
                  "STARPAY_CALL_VERIFY?"):
        assert words in text, words
    assert err.value.config is not None and err.value.config.web.port == 9000  # the rest loaded


def _no_starpay_env(monkeypatch) -> None:
    for var in [v for v in os.environ if v.startswith("STARPAY_")]:
        monkeypatch.delenv(var)


def test_config_show_prints_what_it_can_and_the_errors(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _no_starpay_env(monkeypatch)
    (tmp_path / "starpay.toml").write_text('[web]\nport = 9000\nprot = 1\n')
    monkeypatch.setenv("STARPAY_AGI_PORTT", "1")
    assert cli.main(["config", "show"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["web"]["port"] == 9000
    assert "2 configuration error(s)" in err
    assert "unknown key web.prot" in err and "STARPAY_AGI_PORTT" in err
    assert cli.main(["config", "check"]) == 1
    out = capsys.readouterr().out
    assert "error: starpay.toml: unknown key web.prot" in out and "2 error(s)" in out


def test_other_commands_refuse_a_broken_config_listing_every_error(monkeypatch, capsys,
                                                                  tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    _no_starpay_env(monkeypatch)
    monkeypatch.setenv("STARPAY_CONFIG", str(tmp_path / "gone.toml"))
    monkeypatch.setenv("STARPAY_WEB_PROT", "1")
    assert cli.main(["hours"]) == 2
    err = capsys.readouterr().err
    assert "gone.toml does not exist" in err and "STARPAY_WEB_PROT" in err
