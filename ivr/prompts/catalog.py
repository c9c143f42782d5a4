"""The prompt catalog (prompts/catalog.toml): prompt id -> text per language.

Each id is one sound file, played by Asterisk as ``starpay/<id>``; Asterisk picks
``sounds/<channel language>/starpay/<id>`` itself, so code never names the language.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# The catalog lives beside the code in the source tree (prompts/ at the repository root).
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "prompts" / "catalog.toml"
DEFAULT_LANGUAGES = ("en", "es")
SOUND_DIR = "starpay"
_ID = re.compile(r"^[a-z0-9_-]+$")


class CatalogError(ValueError):
    """The catalog file is unusable; the message names the entry."""


@dataclass(frozen=True)
class Entry:
    id: str
    texts: dict[str, str]
    # Language whose voice speaks the text, when not the directory's own (language offer).
    speak_as: dict[str, str] = field(default_factory=dict)

    def voice_language(self, lang: str) -> str:
        return self.speak_as.get(lang, lang)


class Catalog:
    def __init__(self, entries: dict[str, Entry], languages: tuple[str, ...]):
        self._entries = entries
        self.languages = languages

    @classmethod
    def load(cls, path: str | Path | None = None,
             languages: tuple[str, ...] | list[str] = DEFAULT_LANGUAGES) -> Catalog:
        file = Path(path) if path else DEFAULT_PATH
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CatalogError(f"prompt catalog {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{file}: not valid TOML: {exc}") from None
        entries: dict[str, Entry] = {}
        for pid, table in data.items():
            if not isinstance(table, dict):
                raise CatalogError(f"{file}: {pid} must be a table [{pid}] with en/es texts")
            speak_as = table.get("speak_as", {})
            texts = {k: v for k, v in table.items() if k != "speak_as"}
            if not all(isinstance(v, str) for v in texts.values()) or not isinstance(
                    speak_as, dict):
                raise CatalogError(f"{file}: [{pid}] texts must be strings")
            entries[pid] = Entry(pid, texts, dict(speak_as))
        catalog = cls(entries, tuple(languages))
        problems = catalog.problems()
        if problems:
            raise CatalogError(f"{file}: " + "; ".join(problems))
        return catalog

    def problems(self) -> list[str]:
        out = []
        for pid, entry in self._entries.items():
            if not _ID.match(pid):
                out.append(f"id {pid!r} may only use a-z, 0-9, _ and - (it is a file name)")
            for lang in self.languages:
                if not entry.texts.get(lang, "").strip():
                    out.append(f"[{pid}] has no {lang} text")
            for lang, voice in entry.speak_as.items():
                if lang not in self.languages or voice not in self.languages:
                    out.append(f"[{pid}] speak_as {lang} = {voice!r}: unknown language")
        return out

    @property
    def ids(self) -> list[str]:
        """All ids, in catalog order (the order of the call)."""
        return list(self._entries)

    def __contains__(self, pid: object) -> bool:
        return pid in self._entries

    def entry(self, pid: str) -> Entry:
        try:
            return self._entries[pid]
        except KeyError:
            raise KeyError(f"no prompt {pid!r} in the catalog") from None

    def text(self, pid: str, lang: str) -> str:
        return self.entry(pid).texts[lang]


def prompt_file(pid: str) -> str:
    """The Asterisk sound name for a prompt (no language, no extension)."""
    if not _ID.match(pid):
        raise ValueError(f"not a prompt id: {pid!r}")
    return f"{SOUND_DIR}/{pid}"
