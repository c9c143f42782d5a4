"""Real renders with espeak-ng and sox: what Asterisk will play, checked with `wave`."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from ivr.prompts import build
from ivr.prompts.catalog import Catalog
from tests.conftest import missing_real_part

IDS = {"greeting", "language_offer", "num_21_apoc", "dollars"}


@pytest.fixture
def tools() -> None:
    if not all(shutil.which(t) for t in build.TOOLS):
        missing_real_part("espeak-ng and sox", "apt-get install espeak-ng sox")


def _check_wav(file: Path) -> None:
    with wave.open(str(file)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), file
        assert w.getnframes() / w.getframerate() > 0.3, file


def test_build_renders_telephone_wavs_and_skips_unchanged(tools: None, tmp_path: Path) -> None:
    catalog = Catalog.load()
    seen: list[str] = []
    first = build.build(catalog, tmp_path, jobs=3, only=IDS,
                        progress=lambda done, total, key: seen.append(key))
    assert first.rendered == len(IDS) * 2 and sorted(seen) == sorted(
        f"{lang}/{pid}" for pid in IDS for lang in ("en", "es"))
    for pid in IDS:
        for lang in ("en", "es"):
            _check_wav(tmp_path / lang / f"{pid}.wav")
    again = build.build(catalog, tmp_path, only=IDS)
    assert (again.rendered, again.unchanged) == (0, len(IDS) * 2)
    (tmp_path / "es" / "greeting.wav").unlink()
    assert build.build(catalog, tmp_path, only=IDS).rendered == 1


def test_changed_text_is_rerendered(tools: None, tmp_path: Path) -> None:
    cat = tmp_path / "catalog.toml"
    cat.write_text('[hello]\nen = "Hello there."\nes = "Hola."\n')
    out = tmp_path / "build"
    build.build(Catalog.load(cat), out)
    cat.write_text('[hello]\nen = "Hello there, and welcome."\nes = "Hola."\n')
    result = build.build(Catalog.load(cat), out)
    assert (result.rendered, result.unchanged) == (1, 1)
    cat.write_text('[bye]\nen = "Goodbye."\nes = "Adiós."\n')
    result = build.build(Catalog.load(cat), out)
    assert result.removed == 2 and not (out / "en" / "hello.wav").exists()


def test_install_copies_into_language_dirs_idempotently(tools: None, tmp_path: Path) -> None:
    out, sounds = tmp_path / "build", tmp_path / "sounds"
    build.build(Catalog.load(), out, only={"goodbye"})
    assert build.install_prompts(out, sounds) == 2
    for lang in ("en", "es"):
        _check_wav(sounds / lang / "starpay" / "goodbye.wav")
    assert build.install_prompts(out, sounds) == 0


def test_install_without_a_build_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ivr prompts build"):
        build.install_prompts(tmp_path / "nothing", tmp_path / "sounds")


def test_missing_tools_give_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(build.ToolsMissing, match="apt-get install espeak-ng sox"):
        build.check_tools()
