"""The catalog is complete, well-formed, and agrees with the code that plays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Config
from ivr.prompts import speech, usage
from ivr.prompts.catalog import DEFAULT_PATH, Catalog, CatalogError, prompt_file

ROOT = Path(__file__).resolve().parents[2]
CALL_LANGUAGES = Config().call.languages


def test_catalog_is_complete_for_every_configured_language() -> None:
    catalog = Catalog.load(DEFAULT_PATH, CALL_LANGUAGES)  # raises on any gap
    assert catalog.languages == tuple(CALL_LANGUAGES)
    for pid in catalog.ids:
        for lang in CALL_LANGUAGES:
            assert catalog.text(pid, lang).strip(), (pid, lang)


def test_spanish_is_written_with_its_accents() -> None:
    catalog = Catalog.load()
    spanish = " ".join(catalog.text(pid, "es") for pid in catalog.ids)
    for word in ("dólares", "número", "está", "dieciséis", "veintiún", "miércoles",
                 "sábado", "mañana", "opción"):
        assert word in spanish


@pytest.mark.parametrize("bad, problem", [
    ('[greeting]\nen = "Hi"\n', "has no es text"),
    ('[Greeting]\nen = "Hi"\nes = "Hola"\n', "may only use"),
    ('[greeting]\nen = "Hi"\nes = "  "\n', "has no es text"),
    ('[greeting]\nen = "Hi"\nes = "Hola"\nspeak_as = { en = "fr" }\n', "unknown language"),
    ('greeting = "Hi"\n', "must be a table"),
])
def test_bad_catalogs_are_refused(tmp_path: Path, bad: str, problem: str) -> None:
    file = tmp_path / "catalog.toml"
    file.write_text(bad)
    with pytest.raises(CatalogError, match=problem):
        Catalog.load(file)


def test_prompt_file_is_the_asterisk_sound_name() -> None:
    assert prompt_file("greeting") == "starpay/greeting"
    with pytest.raises(ValueError):
        prompt_file("../etc/passwd")


def _code_uses() -> dict[str, list[str]]:
    uses = usage.python_uses([ROOT / "ivr" / "flows", ROOT / "ivr" / "services"])
    for pid, where in usage.dialplan_uses([ROOT / "asterisk-config"]).items():
        uses.setdefault(pid, []).extend(where)
    return uses


def test_code_uses_no_prompt_missing_from_the_catalog() -> None:
    catalog = Catalog.load()
    missing = {pid: where for pid, where in _code_uses().items() if pid not in catalog}
    assert not missing, f"prompt ids used but not in prompts/catalog.toml: {missing}"


def test_every_catalog_entry_is_used() -> None:
    used = set(_code_uses()) | speech.produced_ids()
    unused = [pid for pid in Catalog.load().ids if pid not in used]
    assert not unused, f"catalog entries nothing plays: {unused}"


def test_usage_scanner_follows_the_convention(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(
        'GREETING_PROMPT = "greeting"\n'
        'DECLINE_PROMPTS = {"nsf": "declined_insufficient_funds"}\n'
        "async def run(s):\n"
        '    await s.play("main_menu", ["press", "digit_1"])\n'
        '    await prompt("goodbye")\n'
        '    await s.stream_file("hello-world")\n'
        '    note = "not_a_prompt"\n')
    (tmp_path / "x.conf").write_text("exten => s,1,Playback(starpay/voicemail_intro) ; "
                                     "starpay/in_a_comment\n")
    found = usage.python_uses([tmp_path])
    assert set(found) == {"greeting", "declined_insufficient_funds", "main_menu", "press",
                          "digit_1", "goodbye"}
    assert found["main_menu"] == [f"{tmp_path / 'flow.py'}:4"]
    assert set(usage.dialplan_uses([tmp_path])) == {"voicemail_intro"}
