"""Find the prompt ids the code uses, so a test can hold code and catalog together.

The convention (keep to it in ivr/flows/ and ivr/services/ and the tests will follow):

* A string literal passed to a call named ``play``, ``prompt``, ``prompts``, ``say``,
  ``play_prompt`` or ``play_prompts`` (function or method; positional or inside a literal
  list/tuple argument) is a prompt id: ``await session.play("greeting", "press")``.
* A string literal assigned to a name ending in ``_PROMPT``, or inside a literal
  list/tuple/set/dict (values) assigned to a name ending in ``_PROMPTS``, is a prompt id:
  ``DECLINE_PROMPTS = {"insufficient_funds": "declined_insufficient_funds"}``.
* Ids built at run time (numbers, money, dates) come from ivr/prompts/speech.py, which lists
  what it can say in ``produced_ids()``.
* In the dialplan, ``starpay/<id>`` (e.g. ``Playback(starpay/service_trouble)``) is a use.

Anything else (f-strings, ids read from data) is invisible here: don't do it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

PLAY_CALLS = frozenset({"play", "prompt", "prompts", "say", "play_prompt", "play_prompts"})
_DIALPLAN_USE = re.compile(r"\bstarpay/([a-z0-9_-]+)")

Uses = dict[str, list[str]]  # id -> ["file:line", ...]


def python_uses(paths: Iterable[Path]) -> Uses:
    """Prompt ids used in the .py files under the given files or directories."""
    uses: Uses = {}
    for file in _files(paths, "*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            for value, lineno in _literals(node):
                uses.setdefault(value, []).append(f"{file}:{lineno}")
    return uses


def dialplan_uses(paths: Iterable[Path]) -> Uses:
    """Prompt ids played as starpay/<id> in the .conf files under the given paths."""
    uses: Uses = {}
    for file in _files(paths, "*.conf"):
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split(";", 1)[0]
            for match in _DIALPLAN_USE.finditer(code):
                uses.setdefault(match.group(1), []).append(f"{file}:{number}")
    return uses


def _files(paths: Iterable[Path], pattern: str) -> list[Path]:
    out: list[Path] = []
    for path in map(Path, paths):
        out += sorted(path.rglob(pattern)) if path.is_dir() else [path] if path.exists() else []
    return out


def _literals(node: ast.AST) -> list[tuple[str, int]]:
    """(string, line) of each prompt id literal in ``node``."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in PLAY_CALLS:
            return [c for arg in node.args for c in _strings(arg)]
        return []
    targets: list[ast.expr] = []
    value: ast.expr | None = None
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    out: list[tuple[str, int]] = []
    for target in targets:
        name = getattr(target, "id", getattr(target, "attr", ""))
        if name.endswith("_PROMPT") and value is not None:
            out += _strings(value) if _is_str(value) else []
        elif name.endswith("_PROMPTS") and value is not None:
            out += _strings(value)
    return out


def _strings(node: ast.expr) -> list[tuple[str, int]]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [(node.value, node.lineno)]
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [c for elt in node.elts for c in _strings(elt)]
    if isinstance(node, ast.Dict):
        return [c for v in node.values for c in _strings(v)]
    return []


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
