"""`ivr dialplan check` on broken dialplans, and install/uninstall round trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.asterisk_admin import install as installer
from ivr.asterisk_admin.check import check
from ivr.asterisk_admin.conf import parse, strip_comment
from ivr.cli import main

SHIPPED = installer.SOURCE_DIR

GOOD = """\
[globals]
SVC=agi://127.0.0.1:4573

[starpay]
exten => *PAY,1,Goto(starpay-call,s,1)
exten => 7729,1,Goto(starpay-call,s,1)

[starpay-call]
exten => s,1,Answer()
 same => n,AGI(${SVC}/pay)
 same => n,GotoIf($["${AGISTATUS}" != "SUCCESS"]?fallback)
 same => n,Hangup()
 same => n(fallback),Queue(billing)
 same => n,VoiceMail(billing@starpay)
"""


def write(tmp_path: Path, dialplan: str, queues: str = "[billing]\n",
          voicemail: str = "[starpay]\nbilling => ,Billing\n") -> Path:
    (tmp_path / "extensions_starpay.conf").write_text(dialplan)
    (tmp_path / "queues.conf").write_text(queues)
    (tmp_path / "voicemail.conf").write_text(voicemail)
    return tmp_path


def errors(tmp_path: Path) -> list[str]:
    return [str(p) for p in check(tmp_path, {"greeting"}) if p.error]


def test_a_good_dialplan_passes(tmp_path: Path) -> None:
    assert errors(write(tmp_path, GOOD)) == []


def test_the_shipped_dialplan_passes() -> None:
    assert [str(p) for p in check(SHIPPED)] == []


@pytest.mark.parametrize("change, message, line", [
    (("starpay-call,s,1)\nexten => 7729", "starpay-cal,s,1)\nexten => 7729"),
     "context [starpay-cal] is not defined", 5),
    (("?fallback)", "?fallbak)"), "no label 'fallbak'", 11),
    ((" same => n,GotoIf", " same => n,NoOp"), "no AGISTATUS check after this AGI()", 10),
    (("SVC=agi://127.0.0.1:4573", "SVC=http://127.0.0.1:4573"), "not an agi:// or hagi://", 10),
    (("SVC=agi://127.0.0.1:4573", "SVC=agi://127.0.0.1:99999"), "out of range", 10),
    (("AGI(${SVC}/pay)", "AGI(${SERVICE}/pay)"), "uses ${SERVICE}", 10),
    (("AGI(${SVC}/pay)", "AGI(${SVC})"), "names no script", 10),
    (("Queue(billing)", "Queue(billing-team)"), "queue 'billing-team' is not defined", 13),
    (("billing@starpay", "sales@starpay"), "mailbox 'sales' is not in context [starpay]", 14),
    (("exten => 7729,1,", "exten => 7720,1,"), "[starpay] has no extension 7729", 4),
    (("Answer()", "Playback(starpay/greting)"), "prompt starpay/greting is not in", 9),
    ((" same => n,Hangup()", "  same => n,Hangup()\nbogus line"), "not `name = value`", 13),
])
def test_broken_dialplans_are_caught_with_file_and_line(
        tmp_path: Path, change: tuple[str, str], message: str, line: int) -> None:
    assert change[0] in GOOD
    found = errors(write(tmp_path, GOOD.replace(*change)))
    hits = [e for e in found if message in e]
    assert hits, found
    assert hits[0].startswith(f"{tmp_path / 'extensions_starpay.conf'}:{line}: error:"), hits


def test_missing_queues_conf_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    (tmp_path / "queues.conf").unlink()
    assert any("no queues.conf" in e for e in errors(tmp_path))


def test_patterns_and_includes_resolve(tmp_path: Path) -> None:
    plan = GOOD.replace("Goto(starpay-call,s,1)\nexten => 7729",
                        "Goto(digits,555,1)\nexten => 7729") + (
        "[digits]\ninclude => more\n[more]\nexten => _5XX,1,NoOp()\n")
    assert errors(write(tmp_path, plan)) == []
    assert any("extension 655" in e for e in errors(write(tmp_path, plan.replace(
        "digits,555", "digits,655"))))


def test_comments_and_includes_keep_their_lines(tmp_path: Path) -> None:
    assert strip_comment(r"exten => s,1,NoOp(a\;b) ; note", False) == (
        "exten => s,1,NoOp(a;b) ", False)
    assert strip_comment("x ;-- block", False) == ("x ", True)
    assert strip_comment("still --; y", True) == (" y", False)
    (tmp_path / "a.conf").write_text("#include b.conf\n[a]\nk = v\n")
    (tmp_path / "b.conf").write_text("; b\n\n[b]\nx => y\n")
    parsed = parse(tmp_path / "a.conf")
    assert [(s.name, s.where.file.name, s.where.line) for s in parsed.sections] == [
        ("b", "b.conf", 3), ("a", "a.conf", 2)]
    assert parsed.sections[0].items[0].where.line == 4


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "check", str(write(tmp_path, GOOD))]) == 0
    write(tmp_path, GOOD.replace("Queue(billing)", "Queue(nobody)"))
    assert main(["dialplan", "check", str(tmp_path)]) == 1
    assert "queue 'nobody' is not defined" in capsys.readouterr().out


# --- install / uninstall --------------------------------------------------------------------

THEIR_EXTENSIONS = b"; their PBX\r\n[general]\r\nstatic=yes\r\n\r\n[from-phones]\r\n" \
                   b"exten => 100,1,Dial(PJSIP/100)"  # CRLF and no final newline, on purpose


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_install_is_idempotent_and_uninstall_restores_every_byte(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "extensions.conf").write_bytes(THEIR_EXTENSIONS)
    (etc / "queues.conf").write_text("[general]\npersistentmembers = no\n\n[sales]\n")
    before = snapshot(etc)
    first = installer.install(etc)
    assert first.changed
    after_first = snapshot(etc)
    assert installer.install(etc).changed == []
    assert snapshot(etc) == after_first
    text = (etc / "extensions.conf").read_bytes()
    assert text.count(b"#include extensions_starpay.conf") == 1
    assert text.endswith(THEIR_EXTENSIONS)
    # Our queue comes in its own file, without our [general].
    assert "persistentmembers" not in (etc / "queues_starpay.conf").read_text()
    assert [str(p) for p in check(etc) if p.error] == []
    installer.uninstall(etc)
    assert snapshot(etc) == before


def test_install_keeps_the_admins_settings_and_their_own_queue(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "extensions.conf").write_text("[general]\n")
    (etc / "queues.conf").write_text("[billing]\nstrategy = ringall\n")
    report = installer.install(etc)
    assert not (etc / "queues_starpay.conf").exists()
    assert any("keeping theirs" in n for n in report.notes)
    settings = etc / installer.SETTINGS
    settings.write_text(settings.read_text().replace("127.0.0.1:4573", "10.0.0.5:4573"))
    installer.install(etc)
    assert "10.0.0.5:4573" in settings.read_text()
    report = installer.uninstall(etc)
    # The edited settings file is the admin's now: kept, and the report says so.
    assert sorted(p.name for p in etc.iterdir()) == [
        "extensions.conf", installer.SETTINGS, "queues.conf"]
    assert "10.0.0.5:4573" in settings.read_text()
    assert any(f"kept {settings}" in n for n in report.notes), report.notes
    assert (etc / "queues.conf").read_text() == "[billing]\nstrategy = ringall\n"
    assert (etc / "extensions.conf").read_text() == "[general]\n"


def test_install_refuses_to_overwrite_a_file_that_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text("[general]\n")
    (tmp_path / "extensions_starpay.conf").write_text("[mine]\n")
    with pytest.raises(installer.InstallError, match="not installed by StarPay"):
        installer.install(tmp_path)
    assert (tmp_path / "extensions_starpay.conf").read_text() == "[mine]\n"


def test_freepbx_install_hooks_from_internal_custom(tmp_path: Path) -> None:
    (tmp_path / "extensions.conf").write_text(
        "#include extensions_custom.conf\n[from-internal]\ninclude => from-internal-custom\n")
    (tmp_path / "extensions_custom.conf").write_text("; custom\n[from-internal-custom]\n")
    (tmp_path / "queues.conf").write_text("#tryinclude queues_custom.conf\n[general]\n")
    before = snapshot(tmp_path)
    report = installer.install(tmp_path, freepbx=True)
    assert any("voicemail" in n for n in report.notes)
    custom = (tmp_path / "extensions_custom.conf").read_text()
    assert "#include extensions_starpay.conf" in custom
    assert "#include extensions_starpay_freepbx.conf" in custom
    assert (tmp_path / "extensions.conf").read_bytes() == before["extensions.conf"]
    parsed = parse(tmp_path / "extensions.conf")
    hooks = [i.value for s in parsed.named("from-internal-custom") for i in s.items]
    assert "starpay" in hooks
    installer.uninstall(tmp_path)
    assert snapshot(tmp_path) == before


def test_cli_install_then_uninstall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(SHIPPED / "queues.conf", tmp_path / "queues.conf")
    (tmp_path / "extensions.conf").write_text("[general]\n")
    assert main(["dialplan", "install", "--to", str(tmp_path)]) == 0
    assert main(["dialplan", "install", "--to", str(tmp_path)]) == 0
    assert "already installed" in capsys.readouterr().out
    assert main(["dialplan", "check", str(tmp_path)]) == 0
    assert main(["dialplan", "uninstall", "--from", str(tmp_path)]) == 0
    assert (tmp_path / "extensions.conf").read_text() == "[general]\n"
