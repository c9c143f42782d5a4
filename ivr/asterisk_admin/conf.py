"""A small reader for Asterisk .conf files that keeps file:line for every item.

Why not pyst2's ``asterisk.config``: it raises ParseError on ``#include`` (our own
extensions_starpay.conf has one), splits on every ``;`` (so ``\\;`` escapes and ``;--`` block
comments break) and cannot say which included file a line came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_SECTION = re.compile(r"^\[([^\]]+)\]\s*(?:\(([^)]*)\))?\s*$")
_INCLUDE = re.compile(r'^#\s*(include|tryinclude)\s+"?([^"]+?)"?\s*$')


@dataclass(frozen=True)
class Where:
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Item:
    name: str
    value: str
    where: Where


@dataclass
class Section:
    name: str
    where: Where
    options: str = ""  # "+", "!", template names
    items: list[Item] = field(default_factory=list)


@dataclass
class Parsed:
    sections: list[Section] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    problems: list[tuple[Where, str]] = field(default_factory=list)
    includes: list[tuple[Where, Path]] = field(default_factory=list)

    def named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]


def strip_comment(line: str, in_block: bool) -> tuple[str, bool]:
    """Remove ``;`` comments (not ``\\;``) and ``;-- --;`` blocks; returns (code, in_block)."""
    out: list[str] = []
    i = 0
    while i < len(line):
        if in_block:
            end = line.find("--;", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 3, False
        elif line.startswith(";--", i):
            i, in_block = i + 3, True
        elif line[i] == ";" and (i == 0 or line[i - 1] != "\\"):
            break
        else:
            out.append(line[i])
            i += 1
    return "".join(out).replace("\\;", ";"), in_block


def read_text(path: Path) -> str:
    """The file as text, whatever its encoding: UTF-8 when it is, else Latin-1.

    Asterisk itself reads bytes; stock samples have Latin-1 bytes in comments (minivm.conf),
    and Latin-1 maps every byte to one character, so lines and ASCII syntax stay intact.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse(path: Path, result: Parsed | None = None, base: Path | None = None) -> Parsed:
    """Read ``path`` and the files it #includes (relative to ``base``, its directory)."""
    result = result if result is not None else Parsed()
    base = base or path.parent
    path = Path(path)
    if path in result.files:
        result.problems.append((Where(path, 0), f"{path.name} is included twice (a loop?)"))
        return result
    result.files.append(path)
    section: Section | None = None
    in_block = False
    # Lines end at \n only, as Asterisk reads them (str.splitlines would also cut at \x85,
    # \x0c and others, which a Latin-1 comment can hold, and shift every line number after).
    for number, raw in enumerate(read_text(path).split("\n"), 1):
        raw = raw.removesuffix("\r")
        where = Where(path, number)
        code, in_block = strip_comment(raw, in_block)
        code = code.strip()
        if not code:
            continue
        if code.startswith("#"):
            m = _INCLUDE.match(code)
            if not m:
                if not code.startswith("#exec"):
                    result.problems.append((where, f"unknown directive {code.split()[0]}"))
                continue
            targets = sorted(base.glob(m.group(2))) if any(c in m.group(2) for c in "*?[") \
                else [base / m.group(2)]
            for target in targets:
                result.includes.append((where, target))
                if target.exists():
                    parse(target, result, base)
                elif m.group(1) == "include":
                    result.problems.append((where, f"#include {m.group(2)}: no such file"))
            # Lines after an #include stay in the includer's section here; our files never
            # rely on either reading (includes come first).
            continue
        m = _SECTION.match(code)
        if m:
            section = Section(m.group(1).strip(), where, (m.group(2) or "").strip())
            result.sections.append(section)
            continue
        eq = code.find("=")
        if eq <= 0:
            result.problems.append((where, f"not `name = value` or `name => value`: {code}"))
            continue
        if section is None:
            result.problems.append((where, "this line comes before any [section]"))
            continue
        value = code[eq + 1:]
        value = value[1:] if value.startswith(">") else value
        section.items.append(Item(code[:eq].strip(), value.strip(), where))
    return result
