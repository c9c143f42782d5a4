"""Render the catalog to telephone-quality WAV files and install them for Asterisk.

espeak-ng speaks each text, sox turns it into what Asterisk plays without transcoding:
8 kHz, mono, 16-bit signed PCM WAV. A manifest of text hashes makes rebuilds skip what did
not change, so editing one prompt re-renders one file.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ivr.prompts.catalog import DEFAULT_PATH, SOUND_DIR, Catalog

DEFAULT_BUILD_DIR = DEFAULT_PATH.parent / "build"
MANIFEST = "manifest.json"
# US callers: American English and Latin American Spanish voices.
VOICES = {"en": "en-us", "es": "es-419"}
# Part of every hash: bump it when the render settings below change, to rebuild everything.
RENDER_VERSION = "1:espeak-ng -s 150|sox -r 8000 -c 1 -b 16 norm -1"
TOOLS = ("espeak-ng", "sox")


class ToolsMissing(RuntimeError):
    pass


class RenderFailed(RuntimeError):
    pass


@dataclass
class BuildResult:
    rendered: int = 0
    unchanged: int = 0
    removed: int = 0


Progress = Callable[[int, int, str], None]  # (done, total, "lang/id")


def check_tools() -> None:
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise ToolsMissing(f"{' and '.join(missing)} not found; install them with: "
                           "apt-get install espeak-ng sox")


def text_hash(voice: str, text: str) -> str:
    return hashlib.sha256(f"{RENDER_VERSION}\0{voice}\0{text}".encode()).hexdigest()


def render(text: str, voice: str, out: Path) -> None:
    """Speak ``text`` with an espeak-ng voice into ``out`` (8 kHz mono 16-bit WAV)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="starpay-prompt-") as tmp:
        raw, final = Path(tmp, "raw.wav"), Path(tmp, "final.wav")
        # The text goes on stdin so a text starting with "-" is never read as an option.
        _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw)], text)
        _run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
              str(final), "norm", "-1"], None)
        # Same directory as the target, so the final rename is atomic.
        fd, partial = tempfile.mkstemp(dir=out.parent, suffix=".part")
        os.close(fd)
        shutil.copyfile(final, partial)
        os.replace(partial, out)


def _run(cmd: list[str], stdin: str | None) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderFailed(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def build(catalog: Catalog, out_dir: Path = DEFAULT_BUILD_DIR, jobs: int = 4,
          progress: Progress | None = None, only: set[str] | None = None) -> BuildResult:
    """Render every (id, language) whose text changed to out_dir/<lang>/<id>.wav.

    ``only`` limits the build to some ids (the rest are left alone, not removed).
    """
    check_tools()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST
    try:
        manifest: dict[str, str] = json.loads(manifest_path.read_text())
    except (FileNotFoundError, ValueError):
        manifest = {}
    result = BuildResult()
    todo: list[tuple[str, str, str, Path]] = []  # key, voice, text, file
    wanted: set[Path] = set()
    for pid in catalog.ids:
        if only is not None and pid not in only:
            continue
        entry = catalog.entry(pid)
        for lang in catalog.languages:
            voice = VOICES.get(entry.voice_language(lang), entry.voice_language(lang))
            text, key = entry.texts[lang], f"{lang}/{pid}"
            file = out_dir / lang / f"{pid}.wav"
            wanted.add(file)
            if manifest.get(key) == text_hash(voice, text) and file.exists():
                result.unchanged += 1
            else:
                todo.append((key, voice, text, file))
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(render, text, voice, file): (key, voice, text)
                       for key, voice, text, file in todo}
            for done, future in enumerate(as_completed(futures), 1):
                key, voice, text = futures[future]
                future.result()
                manifest[key] = text_hash(voice, text)
                result.rendered += 1
                if progress:
                    progress(done, len(todo), key)
    finally:
        # Saved even when a render fails, so the next run redoes only what is missing.
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if only is None:
        result.removed = _remove_stale(out_dir, wanted, manifest, manifest_path)
    return result


def _remove_stale(out_dir: Path, wanted: set[Path], manifest: dict[str, str],
                  manifest_path: Path) -> int:
    removed = 0
    for file in out_dir.glob("*/*.wav"):
        if file not in wanted:
            file.unlink()
            manifest.pop(f"{file.parent.name}/{file.stem}", None)
            removed += 1
    if removed:
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return removed


def install_prompts(build_dir: str | os.PathLike[str], sounds_dir: str | os.PathLike[str]
                    ) -> int:
    """Copy build_dir/<lang>/<id>.wav to sounds_dir/<lang>/starpay/<id>.wav.

    Idempotent: identical files are not rewritten. Files in sounds_dir/<lang>/starpay/ that
    the build no longer has are removed (that directory is StarPay's alone). Returns the
    number of files written or removed.
    """
    build_dir, sounds_dir = Path(build_dir), Path(sounds_dir)
    langs = sorted(d for d in build_dir.iterdir() if d.is_dir()) if build_dir.is_dir() else []
    if not any(d.glob("*.wav") for d in langs):
        raise FileNotFoundError(f"no prompts in {build_dir}; run `ivr prompts build` first")
    changed = 0
    for lang_dir in langs:
        target_dir = sounds_dir / lang_dir.name / SOUND_DIR
        target_dir.mkdir(parents=True, exist_ok=True)
        names = set()
        for wav in sorted(lang_dir.glob("*.wav")):
            names.add(wav.name)
            target = target_dir / wav.name
            if target.exists() and filecmp.cmp(wav, target, shallow=False):
                continue
            fd, partial = tempfile.mkstemp(dir=target_dir, suffix=".part")
            os.close(fd)
            shutil.copyfile(wav, partial)
            os.chmod(partial, 0o644)  # Asterisk often runs as its own user
            os.replace(partial, target)
            changed += 1
        for old in target_dir.glob("*.wav"):
            if old.name not in names:
                old.unlink()
                changed += 1
    return changed
