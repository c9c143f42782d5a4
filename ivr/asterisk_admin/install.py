"""Install StarPay's dialplan into an admin's Asterisk config directory, and take it out again.

What install adds, and all uninstall removes:

* our files, each starting with ``HEADER``: extensions_starpay.conf, its settings file (kept if
  it exists: that is where the admin points the AGI address), and queues_starpay.conf /
  voicemail_starpay.conf holding only our [billing] queue and [starpay] mailbox context
  (not our [general] sections, which would override theirs);
* one ``MARK`` comment line plus one ``#include`` line at the top of their extensions.conf
  (extensions_custom.conf for FreePBX), queues.conf and voicemail.conf. At the top, because
  every line of their file already sits under one of their own [sections], so nothing of
  theirs can end up in our last context, now or after they append to the file.

Nothing else in their files is touched, so uninstall leaves them byte for byte as they were.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ivr.asterisk_admin.conf import parse

SOURCE_DIR = Path(__file__).resolve().parents[2] / "asterisk-config"
HEADER = "; Installed by `ivr dialplan install` (StarPay); `ivr dialplan uninstall` removes it.\n"
MARK = "; StarPay: the next line was added by `ivr dialplan install`\n"
MARK_NEW = "; StarPay: this file was created by `ivr dialplan install`\n"
DIALPLAN = "extensions_starpay.conf"
SETTINGS = "extensions_starpay_settings.conf"
FREEPBX_HOOK = "extensions_starpay_freepbx.conf"
FREEPBX_HOOK_TEXT = """\
; FreePBX: [from-internal-custom] is included in from-internal for custom dialplan, so this
; makes *PAY (and 7729) reachable from internal phones. Register *PAY in Admin > Custom
; Extensions (or Feature Codes) too, so the GUI never hands the code to something else.
[from-internal-custom]
include => starpay
"""


class InstallError(RuntimeError):
    pass


@dataclass
class Report:
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _plan(freepbx: bool) -> dict[str, tuple[str, ...]]:
    """Their file -> the files of ours it must #include."""
    if freepbx:
        # FreePBX writes voicemail.conf itself; the mailbox is a note instead (see install).
        return {"extensions_custom.conf": (DIALPLAN, FREEPBX_HOOK),
                "queues_custom.conf": ("queues_starpay.conf",)}
    return {"extensions.conf": (DIALPLAN,), "queues.conf": ("queues_starpay.conf",),
            "voicemail.conf": ("voicemail_starpay.conf",)}


def _our_files(source: Path, freepbx: bool) -> dict[str, str]:
    files = {DIALPLAN: (source / DIALPLAN).read_text(encoding="utf-8"),
             SETTINGS: (source / SETTINGS).read_text(encoding="utf-8"),
             "queues_starpay.conf": _sections_text(source / "queues.conf", {"general"})}
    if freepbx:
        files[FREEPBX_HOOK] = FREEPBX_HOOK_TEXT
    else:
        files["voicemail_starpay.conf"] = _sections_text(source / "voicemail.conf",
                                                         {"general", "zonemessages"})
    return {name: HEADER + text for name, text in files.items()}


def _sections_text(path: Path, skip: set[str]) -> str:
    """The raw lines of every section of ``path`` except ``skip``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [(s.where.line, s.name) for s in parse(path).sections if s.where.file == path]
    out = []
    for n, (line, name) in enumerate(starts):
        end = starts[n + 1][0] - 1 if n + 1 < len(starts) else len(lines)
        if name not in skip:
            out += lines[line - 1:end]
    return "".join(out)


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    else:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:  # keep \r\n as it is
        return f.read()


def _includes(text: str, name: str) -> bool:
    for line in text.splitlines():
        words = line.split(";", 1)[0].split()
        if len(words) == 2 and words[0] in ("#include", "#tryinclude") and \
                words[1].strip('"').rsplit("/", 1)[-1] == name:
            return True
    return False


def install(target: Path, freepbx: bool = False, source: Path = SOURCE_DIR) -> Report:
    target = Path(target)
    if not target.is_dir():
        raise InstallError(f"{target} is not a directory (give your Asterisk config "
                           "directory, e.g. /etc/asterisk)")
    report = Report()
    ours = _our_files(source, freepbx)
    # Their own definitions win: don't add a second [billing] queue or [starpay] mailbox.
    plan = _plan(freepbx)
    for host, wanted in list(plan.items()):
        skip = [f for f in wanted if f != DIALPLAN and f != FREEPBX_HOOK
                and _defined_elsewhere(target / host, f, ours[f])]
        if skip:
            report.notes.append(f"{host} already defines what {', '.join(skip)} would; "
                                "keeping theirs")
            plan[host] = tuple(f for f in wanted if f not in skip)
            ours = {k: v for k, v in ours.items() if k not in skip}
    for name, text in ours.items():
        path = target / name
        if path.exists():
            current = _read(path)
            if not current.startswith(HEADER):
                raise InstallError(f"{path} exists and was not installed by StarPay; move it "
                                   "away first")
            if name == SETTINGS or current == text:
                continue  # settings are the admin's to edit; unchanged files stay as they are
        _write(path, text)
        report.changed.append(f"wrote {path}")
    for host, wanted in plan.items():
        path = target / host
        existing = _read(path) if path.exists() else None
        text = existing or ""
        add = "".join(MARK + f"#include {name}\n" for name in wanted
                      if not _includes(text, name))
        if not add:
            continue
        if existing is None:
            _write(path, MARK_NEW + add)
        else:
            _write(path, add + existing)
        report.changed.append(f"added #include to {path}")
    if freepbx:
        report.notes.append("FreePBX manages voicemail.conf: create mailbox 'billing' in "
                            "voicemail context 'starpay' (or edit [starpay-voicemail] in "
                            f"{DIALPLAN}) before callers are sent there")
    return report


def _defined_elsewhere(host: Path, name: str, text: str) -> bool:
    """Does the admin's ``host`` file already define a section our ``name`` file defines?"""
    if not host.exists():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        mine = Path(tmp, name)
        mine.write_text(text, encoding="utf-8")
        our_sections = {s.name for s in parse(mine).sections}
    theirs = {s.name for s in parse(host).sections
              if s.where.file.name != name and s.name != "general"}
    return bool(our_sections & theirs)


def uninstall(target: Path) -> Report:
    """Remove every #include line install added and every file it wrote, nothing else."""
    target = Path(target)
    report = Report()
    for path in sorted(target.glob("*.conf")):
        text = _read(path)
        if text.startswith(HEADER):
            path.unlink()
            report.changed.append(f"removed {path}")
            continue
        if MARK not in text:
            continue
        lines = text.splitlines(keepends=True)
        kept, i = [], 0
        while i < len(lines):
            if lines[i] == MARK and i + 1 < len(lines) and lines[i + 1].startswith("#include"):
                i += 2
                continue
            kept.append(lines[i])
            i += 1
        new = "".join(kept)
        if new == MARK_NEW:
            path.unlink()
            report.changed.append(f"removed {path} (install created it)")
        elif new != text:
            _write(path, new)
            report.changed.append(f"removed StarPay #include lines from {path}")
    return report
