"""Change several files of an admin's config directory, all of them or none.

Every change is planned (as bytes) before the first write. Each file is then written to a
temp file in its own directory, fsynced and renamed over the old one (os.replace) with the
old file's mode and owner, so Asterisk, a reload or a crash sees the old file or the new one,
never half of one. When a write fails part-way, the files already changed are put back.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Not ending in .conf: a `#include "dir/*.conf"` must never pick up a half-written temp file.
TEMP_SUFFIX = ".starpay-tmp"


@dataclass(frozen=True)
class Change:
    path: Path
    data: bytes | None  # None: remove the file
    like: Path | None = None  # a new file takes this file's mode and owner (Asterisk reads it)


class ChangeFailed(RuntimeError):
    """A change could not be made; ``left_changed`` lists files that could not be put back."""

    def __init__(self, path: Path, cause: OSError, left_changed: list[tuple[Path, OSError]]):
        self.path = path
        self.cause = cause
        self.left_changed = left_changed
        what = f"could not {'remove' if isinstance(cause, _Removing) else 'write'} {path}: " \
               f"{cause.strerror or cause}"
        if left_changed:
            kept = "; ".join(f"{p} ({e.strerror or e})" for p, e in left_changed)
            super().__init__(f"{what}. These files are changed and could not be put back: "
                             f"{kept}")
        else:
            super().__init__(f"{what}. Nothing was changed: every file is as it was")


class _Removing(OSError):
    pass


@dataclass(frozen=True)
class _Before:
    data: bytes | None
    st: os.stat_result | None


def apply(changes: list[Change]) -> None:
    """Make every change, or (on an OSError) none: the ones made are undone."""
    before = {c.path: _read(c.path) for c in changes}
    done: list[Change] = []
    for change in changes:
        try:
            if change.data is None:
                try:
                    os.unlink(change.path)
                except OSError as exc:
                    raise _Removing(exc.errno, exc.strerror, str(change.path)) from exc
            else:
                old = before[change.path].st
                write(change.path, change.data,
                      old or (_stat(change.like) if change.like else None))
        except OSError as exc:
            raise ChangeFailed(change.path, exc, _undo(done, before)) from exc
        done.append(change)


def _undo(done: list[Change], before: dict[Path, _Before]) -> list[tuple[Path, OSError]]:
    failed: list[tuple[Path, OSError]] = []
    for change in reversed(done):
        old = before[change.path]
        try:
            if old.data is None:
                os.unlink(change.path)
            else:
                write(change.path, old.data, old.st)
        except OSError as exc:
            failed.append((change.path, exc))
    return failed


def write(path: Path, data: bytes, like: os.stat_result | None) -> None:
    """Write ``data`` to ``path`` atomically, with the mode and owner of ``like``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if like is None:
            os.chmod(tmp, 0o644)
        else:
            os.chmod(tmp, stat.S_IMODE(like.st_mode))
            mine = os.stat(tmp)
            if (mine.st_uid, mine.st_gid) != (like.st_uid, like.st_gid):
                os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _read(path: Path) -> _Before:
    try:
        return _Before(path.read_bytes(), path.stat())
    except FileNotFoundError:
        return _Before(None, None)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _sync_dir(directory: Path) -> None:
    # The rename is durable only once the directory is; not every filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
