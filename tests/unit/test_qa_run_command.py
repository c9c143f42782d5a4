"""`ivr qa run` over a folder in which one file is broken: that file is one failed scenario
(with the YAML problem and its line), the others still run, the exit code is 1."""

from __future__ import annotations

import argparse
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.commands.qa import run
from ivr.config import Config

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
BROKEN = 'name: broken\ncaller: "+15551234567"\nsteps:\n  - expect: main_menu\n   press: "1"\n'


def _args(path: Path, junit: Path) -> argparse.Namespace:
    return argparse.Namespace(paths=[str(path)], target="emulator", instance=None,
                              junit=str(junit), jobs=2, verbose=False)


def test_a_broken_yaml_file_fails_alone_and_the_rest_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(SCENARIOS / "zero_balance.yaml", folder / "b_zero_balance.yaml")
    (folder / "a_broken.yaml").write_text(BROKEN)
    junit = tmp_path / "out.xml"

    assert run(_args(folder, junit), Config()) == 1

    out = capsys.readouterr().out
    assert "FAIL  a_broken.yaml (could not be loaded)" in out
    assert "not valid YAML: line 5, column 4" in out
    assert "PASS  zero balance says so and ends the call" in out
    assert "1 passed, 1 failed" in out
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    (failure,) = suite.iter("failure")
    assert "line 5" in (failure.get("message") or "")


def test_a_folder_of_only_broken_files_still_reports_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "wrong.yaml").write_text("name: no steps\ncaller: '+15551234567'\n")
    assert run(_args(tmp_path, tmp_path / "out.xml"), Config()) == 1
    out = capsys.readouterr().out
    assert "bad.yaml (could not be loaded)" in out and "line 2" in out
    assert "wrong.yaml (could not be loaded)" in out and "`steps` is a non-empty list" in out
    assert "0 passed, 2 failed" in out


def test_a_missing_path_is_still_a_usage_error(tmp_path: Path) -> None:
    assert run(_args(tmp_path / "nowhere", tmp_path / "out.xml"), Config()) == 2
