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
Files are bytes here, never decoded text: stock samples are not all UTF-8 (minivm.conf has
Latin-1), and a byte we don't change must come back as it was. Every change is planned
before the first write, and ``files.apply`` makes all of them or none.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ivr.asterisk_admin import files
from ivr.asterisk_admin.conf import parse

SOURCE_DIR = Path(__file__).resolve().parents[2] / "asterisk-config"
HEADER = b"; Installed by `ivr dialplan install` (StarPay); `ivr dialplan uninstall` removes it.\n"
MARK = b"; StarPay: the next line was added by `ivr dialplan install`\n"
MARK_NEW = b"; StarPay: this file was created by `ivr dialplan install`\n"
# The settings file records what install wrote, so uninstall can tell an edited one (the
# admin's, kept) from an untouched one (ours, removed), whatever StarPay version wrote it.
SETTINGS_HASH = b"; StarPay: as installed, sha256 "
SETTINGS_HASH_TAIL = b" (uninstall keeps this file once you edit it)\n"
DIALPLAN = "extensions_starpay.conf"
SETTINGS = "extensions_starpay_settings.conf"
QUEUES = "queues_starpay.conf"
VOICEMAIL = "voicemail_starpay.conf"
FREEPBX_HOOK = "extensions_starpay_freepbx.conf"
FREEPBX_HOOK_TEXT = b"""\
; FreePBX: [from-internal-custom] is included in from-internal for custom dialplan, so this
; makes *PAY (and 7729) reachable from internal phones. Register *PAY in Admin > Custom
; Extensions (or Feature Codes) too, so the GUI never hands the code to something else.
[from-internal-custom]
include => starpay
"""
INCLUDED = {DIALPLAN, QUEUES, VOICEMAIL, FREEPBX_HOOK}  # what a MARKed #include may name


class InstallError(RuntimeError):
    pass


@dataclass
class Report:
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    changes: list[files.Change] = field(default_factory=list)
    report: Report = field(default_factory=Report)

    def add(self, change: files.Change, said: str) -> None:
        self.changes.append(change)
        self.report.changed.append(said)


def _hosts(freepbx: bool) -> dict[str, tuple[str, ...]]:
    """Their file -> the files of ours it must #include."""
    if freepbx:
        # FreePBX writes voicemail.conf itself; the mailbox is a note instead (see install).
        return {"extensions_custom.conf": (DIALPLAN, FREEPBX_HOOK),
                "queues_custom.conf": (QUEUES,)}
    return {"extensions.conf": (DIALPLAN,), "queues.conf": (QUEUES,),
            "voicemail.conf": (VOICEMAIL,)}


def _our_files(source: Path, freepbx: bool) -> dict[str, bytes]:
    found = {DIALPLAN: (source / DIALPLAN).read_bytes(),
             SETTINGS: (source / SETTINGS).read_bytes(),
             QUEUES: _sections_bytes(source / "queues.conf", {"general"})}
    if freepbx:
        found[FREEPBX_HOOK] = FREEPBX_HOOK_TEXT
    else:
        found[VOICEMAIL] = _sections_bytes(source / "voicemail.conf", {"general", "zonemessages"})
    out = {name: HEADER + data for name, data in found.items()}
    out[SETTINGS] = _stamped(out[SETTINGS])
    return out


def _stamped(settings: bytes) -> bytes:
    """The settings file with the hash of itself (without that line) after HEADER."""
    digest = hashlib.sha256(settings).hexdigest().encode()
    return HEADER + SETTINGS_HASH + digest + SETTINGS_HASH_TAIL + settings[len(HEADER):]


def settings_edited(data: bytes, source: Path = SOURCE_DIR) -> bool:
    """Has the admin changed this settings file since install wrote it?"""
    lines = _lines(data)
    stamp = next((line for line in lines[:3] if line.startswith(SETTINGS_HASH)), None)
    if stamp is None:  # written before install stamped it: only the shipped text is ours
        return data != HEADER + (source / SETTINGS).read_bytes()
    recorded = stamp[len(SETTINGS_HASH):].split(b" ", 1)[0].decode("ascii", "replace")
    rest = b"".join(line for line in lines if line is not stamp)
    return hashlib.sha256(rest).hexdigest() != recorded


def _lines(data: bytes) -> list[bytes]:
    """Lines with their endings, cut at b"\\n" only (as Asterisk and conf.parse read them)."""
    out = [line + b"\n" for line in data.split(b"\n")]
    out[-1] = out[-1][:-1]
    return out if out[-1] else out[:-1]


def _sections_bytes(path: Path, skip: set[str]) -> bytes:
    """The raw lines of every section of ``path`` except ``skip``."""
    lines = _lines(path.read_bytes())
    starts = [(s.where.line, s.name) for s in parse(path).sections if s.where.file == path]
    out: list[bytes] = []
    for n, (line, name) in enumerate(starts):
        end = starts[n + 1][0] - 1 if n + 1 < len(starts) else len(lines)
        if name not in skip:
            out += lines[line - 1:end]
    return b"".join(out)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _include_target(line: bytes) -> str | None:
    """The file name a ``#include``/``#tryinclude`` line names, else None."""
    words = line.split(b";", 1)[0].split()
    if len(words) != 2 or words[0] not in (b"#include", b"#tryinclude"):
        return None
    return words[1].strip(b'"').rsplit(b"/", 1)[-1].decode("latin-1")


def _includes(data: bytes, name: str) -> bool:
    return any(_include_target(line) == name for line in _lines(data))


def install(target: Path, freepbx: bool = False, source: Path = SOURCE_DIR) -> Report:
    target = Path(target)
    if not target.is_dir():
        raise InstallError(f"{target} is not a directory (give your Asterisk config "
                           "directory, e.g. /etc/asterisk)")
    plan = _plan_install(target, freepbx, source)
    try:
        files.apply(plan.changes)
    except files.ChangeFailed as exc:
        if exc.left_changed:
            raise InstallError(f"{exc}. Run `ivr dialplan uninstall --from {target}` to take "
                               "out what install wrote, fix the cause, then install again"
                               ) from exc
        raise InstallError(f"{exc}. Fix the cause (permissions? disk space?) and run install "
                           "again") from exc
    return plan.report


def _plan_install(target: Path, freepbx: bool, source: Path) -> _Plan:
    plan = _Plan()
    ours = _our_files(source, freepbx)
    hosts = _hosts(freepbx)
    # Their own definitions win: don't add a second [billing] queue or [starpay] mailbox.
    for host, wanted in list(hosts.items()):
        skip = [f for f in wanted if f not in (DIALPLAN, FREEPBX_HOOK)
                and _defined_elsewhere(target / host, f, ours[f])]
        if skip:
            plan.report.notes.append(f"{host} already defines what {', '.join(skip)} would; "
                                     "keeping theirs")
            hosts[host] = tuple(f for f in wanted if f not in skip)
            ours = {k: v for k, v in ours.items() if k not in skip}
    # New files get the mode and owner of the dialplan host file, so Asterisk can read them.
    like = next((target / h for h in hosts if (target / h).exists()),
                target / "extensions.conf")
    for name, data in ours.items():
        path = target / name
        current = _read(path)
        if current is not None:
            if not current.startswith(HEADER):
                raise InstallError(f"{path} exists and was not installed by StarPay; move it "
                                   "away first (nothing was changed)")
            if name == SETTINGS or current == data:
                continue  # settings are the admin's to edit; unchanged files stay as they are
        plan.add(files.Change(path, data, like), f"wrote {path}")
    for host, wanted in hosts.items():
        path = target / host
        existing = _read(path)
        add = b"".join(MARK + f"#include {name}\n".encode() for name in wanted
                       if not _includes(existing or b"", name))
        if not add:
            continue
        if existing is None:
            plan.add(files.Change(path, MARK_NEW + add, like), f"created {path} with "
                     f"#include {', '.join(wanted)}")
        else:
            names = [n for n in wanted if not _includes(existing, n)]
            plan.add(files.Change(path, add + existing),
                     f"added #include {', '.join(names)} at the top of {path}")
    if freepbx:
        plan.report.notes.append("FreePBX manages voicemail.conf: create mailbox 'billing' in "
                                 "voicemail context 'starpay' (or edit [starpay-voicemail] in "
                                 f"{DIALPLAN}) before callers are sent there")
    return plan


def _defined_elsewhere(host: Path, name: str, data: bytes) -> bool:
    """Does the admin's ``host`` file already define a section our ``name`` file defines?"""
    if not host.exists():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        mine = Path(tmp, name)
        mine.write_bytes(data)
        our_sections = {s.name for s in parse(mine).sections}
    theirs = {s.name for s in parse(host).sections
              if s.where.file.name != name and s.name != "general"}
    return bool(our_sections & theirs)


def uninstall(target: Path, source: Path = SOURCE_DIR) -> Report:
    """Remove every #include line install added and every file it wrote, nothing else.

    An edited settings file is the admin's: it stays, and the report says so.
    """
    target = Path(target)
    if not target.is_dir():
        raise InstallError(f"{target} is not a directory (give the directory install was "
                           "given, e.g. /etc/asterisk)")
    plan = _plan_uninstall(target, source)
    try:
        files.apply(plan.changes)
    except files.ChangeFailed as exc:
        raise InstallError(f"{exc}. Fix the cause (permissions? disk space?) and run "
                           "uninstall again: it finishes from where the tree is") from exc
    return plan.report


def _plan_uninstall(target: Path, source: Path) -> _Plan:
    rewrites, removals = _Plan(), _Plan()
    for path in sorted(target.glob("*.conf")):
        data = path.read_bytes()
        if data.startswith(HEADER):
            if path.name == SETTINGS and settings_edited(data, source):
                removals.report.notes.append(
                    f"kept {path}: it was changed after install, so it is yours now (remove "
                    "it yourself when you no longer need it)")
                continue
            removals.add(files.Change(path, None), f"removed {path}")
            continue
        if MARK.rstrip(b"\n") not in data:
            continue
        lines = _lines(data)
        kept, i = [], 0
        while i < len(lines):
            if (lines[i].rstrip(b"\r\n") == MARK.rstrip(b"\n") and i + 1 < len(lines)
                    and _include_target(lines[i + 1]) in INCLUDED):
                i += 2
                continue
            kept.append(lines[i])
            i += 1
        new = b"".join(kept)
        if new.strip() == MARK_NEW.strip():
            removals.add(files.Change(path, None), f"removed {path} (install created it)")
        elif new != data:
            rewrites.add(files.Change(path, new), f"removed StarPay #include lines from {path}")
    # Their files first: a reload between two steps never meets an #include of a removed file.
    return _Plan(rewrites.changes + removals.changes,
                 Report(rewrites.report.changed + removals.report.changed,
                        removals.report.notes))
