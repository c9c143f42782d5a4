"""Imports flow one way: outer rooms use inner ones, never the reverse.

A room is a top-level package under ivr/ (agi, flows, services, ...) or a top-level module
(config, cli, app, ...). Every module is parsed, not imported, and every import counts:
module level, inside functions, under TYPE_CHECKING, relative or absolute. Each test lists
every offence at once, as ``file:line imported.name``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ivr"


@dataclass(frozen=True)
class Import:
    file: str  # "ivr/flows/agent.py"
    line: int
    name: str  # "ivr.flows.hours_speech.describe_hours": module, then the name taken from it
    src: str  # the importing file's room
    dst: str  # the imported room

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.name}"


def rooms(package: Path = PACKAGE) -> frozenset[str]:
    out = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    out |= {p.name for p in package.iterdir() if p.is_dir() and any(p.rglob("*.py"))}
    return frozenset(out)


def scan(package: Path = PACKAGE) -> list[Import]:
    """Every import of an ivr module by a module under ``package``."""
    known = rooms(package)
    out: list[Import] = []
    for file in sorted(package.rglob("*.py")):
        rel = file.relative_to(package.parent)
        parts = list(rel.with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        module = parts[:-1] if is_init else parts
        here = module if is_init else module[:-1]  # the package relative imports start from
        src = module[1] if len(module) > 1 else package.name
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _names(node, here):
                if name.split(".")[0] != package.name:
                    continue
                bits = name.split(".")
                dst = bits[1] if len(bits) > 1 and bits[1] in known else package.name
                out.append(Import(rel.as_posix(), node.lineno, name, src, dst))
    return out


def _names(node: ast.Import | ast.ImportFrom, here: list[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = here[:len(here) - node.level + 1] if node.level else []
    module = ".".join(base + ([node.module] if node.module else []))
    # `from ivr import log` takes a module, `from ivr.config import Config` a name: either
    # way the room is the one of the module's path.
    return [module if alias.name == "*" else f"{module}.{alias.name}" for alias in node.names]


# --- the rules -------------------------------------------------------------------------------

Forbidden = Callable[[str], bool]  # imported room -> not allowed here


def only(*allowed: str) -> Forbidden:
    return lambda room: room not in allowed


def none_of(*patterns: str) -> Forbidden:
    return lambda room: any(fnmatch(room, p) for p in patterns)


def everyone_but(*names: str) -> Callable[[str], bool]:
    return lambda room: room not in names


@dataclass(frozen=True)
class Rule:
    says: str
    applies: Callable[[str], bool]  # importing room -> the rule holds there
    forbidden: Forbidden


RULES = [
    # log is a leaf (it imports nothing of ivr, see below): the server tags log lines with
    # the call's uniqueid through it.
    Rule("agi is the wire protocol: it imports nothing of the app but log",
         lambda r: r == "agi", only("agi", "log")),
    # (money and phone would be fine here too, as leaves; storage uses neither.)
    Rule("storage imports nothing above itself", lambda r: r == "storage", only("storage")),
    Rule("log is a leaf every room may use", lambda r: r == "log", only("log")),
    Rule("services are the business: no wire protocols, prompts, config or outer rooms",
         lambda r: r == "services",
         none_of("ami", "agi", "prompts", "config", "flows", "commands", "qa", "web", "app*",
                 "asterisk*")),
    # flows/payment.py names the payment service's Tx handle through ivr.services.payments.
    Rule("flows use services, never storage, AMI, commands, QA or the composition root",
         lambda r: r == "flows", none_of("commands", "qa", "storage", "ami", "app*")),
    Rule("gateways sit under the services and know no config",
         lambda r: r == "gateways", none_of("services", "flows", "config")),
    Rule("only the CLI runs commands", everyone_but("cli", "commands"), none_of("commands")),
    Rule("only commands run QA", everyone_but("qa", "commands"), none_of("qa")),
]

# (file, imported room) -> why, for imports that break a rule and are on their way out, e.g.
# ("ivr/services/callbacks.py", "config"): "being moved to the composition root".
# Each must still break it (test_known_violations_still_exist), so the list cannot go stale.
# Empty now: callbacks.py and reconcile.py, the last two, left config and AMI to ivr/app.py.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def violations(imports: Iterable[Import]) -> list[tuple[Import, Rule]]:
    return [(imp, rule) for imp in imports for rule in RULES
            if imp.src != imp.dst and rule.applies(imp.src) and rule.forbidden(imp.dst)]


def test_imports_keep_to_the_rules() -> None:
    found = [f"{imp}  ({rule.says})" for imp, rule in violations(scan())
             if (imp.file, imp.dst) not in KNOWN_VIOLATIONS]
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_known_violations_still_exist() -> None:
    still = {(imp.file, imp.dst) for imp, _ in violations(scan())}
    gone = [f"{file} -> {room}" for file, room in KNOWN_VIOLATIONS if (file, room) not in still]
    assert not gone, "fixed: take these out of KNOWN_VIOLATIONS:\n" + "\n".join(gone)


# --- no circles between rooms ------------------------------------------------------------------

def room_graph(imports: Iterable[Import]) -> dict[str, dict[str, list[Import]]]:
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in imports:
        if imp.src != imp.dst:
            graph[imp.src][imp.dst].append(imp)
    return graph


def circles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected groups of two or more rooms (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(room: str) -> None:
        index[room] = low[room] = len(index)
        stack.append(room)
        for nxt in graph.get(room, {}):
            if nxt not in index:
                visit(nxt)
                low[room] = min(low[room], low[nxt])
            elif nxt in stack:
                low[room] = min(low[room], index[nxt])
        if low[room] == index[room]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == room:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for room in sorted(graph):
        if room not in index:
            visit(room)
    return out


def test_no_circle_between_rooms() -> None:
    # The known violations are left out: the circles they close go when they do.
    imports = [imp for imp in scan() if (imp.file, imp.dst) not in KNOWN_VIOLATIONS]
    graph = room_graph(imports)
    found = []
    for group in circles(graph):
        edges = [f"  {a} -> {b}: {', '.join(map(str, graph[a][b]))}"
                 for a in group for b in group if b in graph.get(a, {})]
        found.append(" <-> ".join(group) + "\n" + "\n".join(edges))
    assert not found, "rooms importing each other:\n" + "\n".join(found)


# --- the checker itself -----------------------------------------------------------------------

def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "ivr"
    for folder in ("services", "flows", "agi"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("")
    (pkg / "log.py").write_text("")
    (pkg / "services" / "late.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import ivr.agi.session\n"
        "if TYPE_CHECKING:\n"
        "    from ivr.flows import context\n"
        "def f():\n"
        "    from ..config import Config\n"
        "    from . import other\n")
    (pkg / "agi" / "server.py").write_text("from ivr import log\nfrom ivr import config\n")
    (pkg / "flows" / "__init__.py").write_text("from .. import services\n")
    found = {str(imp): (imp.src, imp.dst) for imp in scan(pkg)}
    assert found == {
        "ivr/services/late.py:2 ivr.agi.session": ("services", "agi"),
        "ivr/services/late.py:4 ivr.flows.context": ("services", "flows"),
        "ivr/services/late.py:6 ivr.config.Config": ("services", "config"),
        "ivr/services/late.py:7 ivr.services.other": ("services", "services"),
        "ivr/agi/server.py:1 ivr.log": ("agi", "log"),
        "ivr/agi/server.py:2 ivr.config": ("agi", "config"),
        "ivr/flows/__init__.py:1 ivr.services": ("flows", "services"),
    }
    broken = {(str(imp), rule.says.split()[0]) for imp, rule in violations(scan(pkg))}
    assert broken == {("ivr/services/late.py:2 ivr.agi.session", "services"),
                      ("ivr/services/late.py:4 ivr.flows.context", "services"),
                      ("ivr/services/late.py:6 ivr.config.Config", "services"),
                      ("ivr/agi/server.py:2 ivr.config", "agi")}
    assert circles(room_graph(scan(pkg))) == [["flows", "services"]]


# Building a resource from the config: only the composition root does it. Our builders are
# ivr.gateways.from_config (imported bare, or as gateway_from_config) and
# AMIClient.from_config; alembic's ScriptDirectory.from_config is not ours.
_BUILDERS = {"from_config", "gateway_from_config"}
_BUILDER_OWNERS = {"AMIClient", "gateways"}
ROOT_MODULES = {"ivr/app.py", "ivr/app_hours.py"}


def _builds_from_config(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        if func.attr == "from_config":
            return isinstance(func.value, ast.Name) and func.value.id in _BUILDER_OWNERS
        name = func.attr
    else:
        name = getattr(func, "id", "")
    if name in _BUILDERS:
        return True
    # Database(cfg.database.url, ...): a database opened straight from the config.
    return name == "Database" and any(
        isinstance(a, ast.Attribute) and a.attr == "url"
        and isinstance(a.value, ast.Attribute) and a.value.attr == "database"
        for a in call.args)


def test_only_the_composition_root_builds_resources_from_the_config() -> None:
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        rel = file.relative_to(ROOT).as_posix()
        if rel in ROOT_MODULES or rel.startswith("ivr/gateways/"):  # from_config's home
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        found += [f"{rel}:{n.lineno}" for n in ast.walk(tree)
                  if isinstance(n, ast.Call) and _builds_from_config(n)]
    assert not found, "build these through ivr.app.App instead:\n" + "\n".join(found)
