"""install/uninstall on files that are not UTF-8, and with writes that fail part-way.

A config directory is compared by every file's bytes and the list of names (so a temp file
left behind shows up too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.asterisk_admin import install as installer
from ivr.asterisk_admin.check import check
from ivr.asterisk_admin.conf import parse
from ivr.cli import main

# Latin-1 in comments and values, a lone \r, \x85 (NEL) and \x0c (form feed) that
# str.splitlines would cut at, and a byte sequence that is valid in no encoding we'd guess.
LATIN1_EXTENSIONS = (b"; R\xf6stbrevl\xe5da \x85 caf\xe9\x0c\n[general]\nstatic=yes\n\n"
                     b"[from-phones]\nexten => 100,1,NoOp(Gr\xfc\xdfe)\r\n"
                     b" same => n,Dial(PJSIP/100)\r; lone CR\n; \xff\xfe\xc3\x28 end")
LATIN1_QUEUES = b"[general]\n; file d'attente \xe0 la caisse\npersistentmembers = yes\n"
LATIN1_VOICEMAIL = b"[general]\nemailsubject=Du har f\xe5tt ett meddelande\n[default]\n"


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    (d / "extensions.conf").write_bytes(LATIN1_EXTENSIONS)
    (d / "queues.conf").write_bytes(LATIN1_QUEUES)
    (d / "voicemail.conf").write_bytes(LATIN1_VOICEMAIL)
    (d / "minivm.conf").write_bytes(b"[general]\nsubject = Du har f\xe5tt r\xf6stmeddelande\n")
    return d


def test_non_utf8_bytes_round_trip(etc: Path) -> None:
    before = snapshot(etc)
    installer.install(etc)
    for name in ("extensions.conf", "queues.conf", "voicemail.conf"):
        assert snapshot(etc)[name].endswith(before[name])
    assert [str(p) for p in check(etc) if p.error] == []
    installer.uninstall(etc)
    assert snapshot(etc) == before


def test_the_reader_keeps_line_numbers_past_odd_bytes(etc: Path) -> None:
    sections = [(s.name, s.where.line) for s in parse(etc / "extensions.conf").sections]
    assert sections == [("general", 2), ("from-phones", 5)]


def test_cli_uninstall_of_a_latin1_tree(etc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(etc)
    assert main(["dialplan", "install", "--to", str(etc)]) == 0
    assert main(["dialplan", "check", str(etc)]) == 0
    assert main(["dialplan", "uninstall", "--from", str(etc)]) == 0
    assert snapshot(etc) == before
    assert "Traceback" not in capsys.readouterr().err


def fail_nth_call(monkeypatch: pytest.MonkeyPatch, n: int, *, forever: bool = False,
                  names: tuple[str, ...] = ("replace", "unlink")) -> list[int]:
    """Make the n-th call of os.replace/os.unlink (counted together) raise ENOSPC."""
    calls = [0]
    for name in names:
        real: Callable[..., Any] = getattr(os, name)

        def failing(*args: Any, _real: Callable[..., Any] = real, **kw: Any) -> Any:
            calls[0] += 1
            if calls[0] == n or (forever and calls[0] >= n):
                raise OSError(28, "No space left on device")
            return _real(*args, **kw)

        monkeypatch.setattr(os, name, failing)
    return calls


INSTALL_WRITES = 7  # 4 files of ours, then the #include in 3 of theirs


@pytest.mark.parametrize("n", range(1, INSTALL_WRITES + 1))
def test_install_failing_at_any_write_leaves_every_file_as_it_was(
        etc: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    before = snapshot(etc)
    fail_nth_call(monkeypatch, n, names=("replace",))
    with pytest.raises(installer.InstallError, match="Nothing was changed") as caught:
        installer.install(etc)
    assert "run install again" in str(caught.value)
    assert snapshot(etc) == before
    monkeypatch.undo()
    installer.install(etc)  # and the next try goes through
    assert [str(p) for p in check(etc) if p.error] == []


def test_install_counts_its_writes(etc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fail_nth_call(monkeypatch, 0, names=("replace",))
    installer.install(etc)
    assert calls[0] == INSTALL_WRITES  # so the test above fails at each one of them


UNINSTALL_STEPS = 7  # 3 of their files rewritten, then 4 of ours removed


@pytest.mark.parametrize("n", range(1, UNINSTALL_STEPS + 1))
def test_uninstall_failing_at_any_step_leaves_every_file_as_it_was(
        etc: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        n: int) -> None:
    installer.install(etc)
    installed = snapshot(etc)
    fail_nth_call(monkeypatch, n)
    assert main(["dialplan", "uninstall", "--from", str(etc)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Nothing was changed" in err, err
    assert "run uninstall again" in err
    assert snapshot(etc) == installed


def test_uninstall_counts_its_steps(etc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installer.install(etc)
    calls = fail_nth_call(monkeypatch, 0)
    installer.uninstall(etc)
    assert calls[0] == UNINSTALL_STEPS


def test_when_putting_back_fails_too_the_message_says_what_to_run(
        etc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(etc)
    # Writes from the 6th on fail: the 4 new files are removed again (unlink works), but the
    # include added to extensions.conf cannot be taken back by another replace.
    fail_nth_call(monkeypatch, 6, forever=True, names=("replace",))
    with pytest.raises(installer.InstallError) as caught:
        installer.install(etc)
    message = str(caught.value)
    assert "could not be put back" in message and "extensions.conf" in message
    assert f"ivr dialplan uninstall --from {etc}" in message
    monkeypatch.undo()
    installer.uninstall(etc)  # what the message says to do
    assert snapshot(etc) == before


def test_modes_and_owners_are_kept(etc: Path) -> None:
    os.chmod(etc / "extensions.conf", 0o640)
    os.chmod(etc / "queues.conf", 0o600)
    owner = (1234, 2345) if os.geteuid() == 0 else None
    if owner:
        os.chown(etc / "extensions.conf", *owner)
    installer.install(etc)
    ext = (etc / "extensions.conf").stat()
    assert ext.st_mode & 0o777 == 0o640
    assert (etc / "queues.conf").stat().st_mode & 0o777 == 0o600
    ours = (etc / installer.DIALPLAN).stat()
    # New files are like extensions.conf beside them, so the asterisk user can read them.
    assert ours.st_mode & 0o777 == 0o640
    if owner:
        assert (ext.st_uid, ext.st_gid) == owner
        assert (ours.st_uid, ours.st_gid) == owner


def test_an_unedited_settings_file_goes_and_an_edited_one_stays(etc: Path) -> None:
    before = snapshot(etc)
    installer.install(etc)
    settings = etc / installer.SETTINGS
    assert not installer.settings_edited(settings.read_bytes())
    installer.uninstall(etc)
    assert snapshot(etc) == before
    installer.install(etc)
    settings.write_bytes(settings.read_bytes().replace(b"127.0.0.1:4573", b"10.0.0.5:4573"))
    report = installer.uninstall(etc)
    assert any("kept" in n and "yours" in n for n in report.notes)
    assert set(snapshot(etc)) == set(before) | {installer.SETTINGS}


def test_a_settings_file_from_before_the_stamp_is_judged_by_the_shipped_one(etc: Path) -> None:
    shipped = installer.HEADER + (installer.SOURCE_DIR / installer.SETTINGS).read_bytes()
    assert not installer.settings_edited(shipped)
    assert installer.settings_edited(shipped.replace(b"127.0.0.1", b"10.1.1.1"))
