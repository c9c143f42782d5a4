"""`ivr dialplan check`: find what would make a StarPay call fail, before a caller does.

Checks, in our own files (extensions_starpay*.conf): the entry extensions exist, every
AGI() target is a well-formed agi:// or hagi:// URL (after expanding variables the dialplan
Sets), every AGI() is followed by an AGISTATUS fallback, every Goto/GotoIf/Gosub target,
include, Queue() and VoiceMail() names something defined, and every starpay/<prompt> played
is in the prompt catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ivr.asterisk_admin.conf import Parsed, Where, parse

OWN_FILES = re.compile(r"^extensions_starpay.*\.conf$")
REQUIRED = {"starpay": ("*PAY", "7729")}
NOT_CONTEXTS = {"general", "globals"}
BRANCH_APPS = {"gotoif", "gosubif", "execif"}  # what can act on AGISTATUS
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_SET = re.compile(r"^_{0,2}([A-Za-z0-9_]+)=(.*)$")
_PROMPT = re.compile(r"\bstarpay/([A-Za-z0-9_-]+)")
_QUEUE_FN = re.compile(r"QUEUE_MEMBER\(([^,)]+)")


@dataclass
class Step:
    priority: int
    label: str
    app: str
    args: str
    where: Where


@dataclass
class Context:
    name: str
    where: Where
    extensions: dict[str, list[Step]] = field(default_factory=dict)
    includes: list[tuple[str, Where]] = field(default_factory=list)


@dataclass
class Problem:
    where: Where
    message: str
    error: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {'error' if self.error else 'warning'}: {self.message}"


def split_top(text: str, sep: str, limit: int = -1) -> list[str]:
    """Split on ``sep`` outside (), [] and {} (so ${IF(a?b:c)} stays whole)."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0 and (limit < 0 or len(parts) < limit):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    return parts + ["".join(cur)]


def _app(text: str) -> tuple[str, str]:
    text = text.strip()
    if "(" in text:
        name, _, rest = text.partition("(")
        return name.strip(), rest[:-1] if rest.endswith(")") else rest
    name, _, rest = text.partition(",")  # old App,args style
    return name.strip(), rest


class Dialplan:
    def __init__(self, parsed: Parsed):
        self.parsed = parsed
        self.contexts: dict[str, Context] = {}
        self.problems: list[Problem] = [Problem(w, m) for w, m in parsed.problems]
        self.variables: dict[str, set[str]] = {}
        for section in parsed.sections:
            if section.name == "globals":
                for item in section.items:
                    self.variables.setdefault(item.name, set()).add(item.value)
            if section.name in NOT_CONTEXTS or "!" in section.options:
                continue
            ctx = self.contexts.setdefault(section.name, Context(section.name, section.where))
            self._read_context(ctx, section.items)

    def _read_context(self, ctx: Context, items: list) -> None:
        current: str | None = None
        for item in items:
            if item.name == "include":
                ctx.includes.append((item.value.strip(), item.where))
                continue
            if item.name not in ("exten", "same"):
                continue
            if item.name == "exten":
                parts = split_top(item.value, ",", 2)
                if len(parts) < 3:
                    self.problems.append(Problem(item.where, "exten needs extension,priority,"
                                                 "application"))
                    continue
                current, prio, body = parts[0].strip(), parts[1].strip(), parts[2]
            else:
                if current is None:
                    self.problems.append(Problem(item.where, "`same =>` with no `exten =>` "
                                                 "before it in this context"))
                    continue
                parts = split_top(item.value, ",", 1)
                prio, body = parts[0].strip(), parts[1] if len(parts) > 1 else ""
            steps = ctx.extensions.setdefault(current, [])
            m = re.match(r"^(n|\d+|hint)(?:\(([^)]*)\))?$", prio)
            if not m:
                self.problems.append(Problem(item.where, f"priority {prio!r} is not a number, "
                                             "n or n(label)"))
                continue
            if m.group(1) == "hint":
                continue
            number = steps[-1].priority + 1 if m.group(1) == "n" and steps else int(
                m.group(1)) if m.group(1) != "n" else 1
            app, args = _app(body)
            steps.append(Step(number, m.group(2) or "", app, args, item.where))
            if app.lower() == "set":
                s = _SET.match(args.strip())
                if s:
                    self.variables.setdefault(s.group(1), set()).add(s.group(2))

    # --- lookups ------------------------------------------------------------------------------

    def find_extension(self, context: str, exten: str, seen: set[str] | None = None
                       ) -> list[Step] | None:
        ctx = self.contexts.get(context)
        seen = seen or set()
        if ctx is None or context in seen:
            return None
        seen.add(context)
        if exten in ctx.extensions:
            return ctx.extensions[exten]
        for pattern, steps in ctx.extensions.items():
            if pattern.startswith("_") and _pattern(pattern).fullmatch(exten):
                return steps
        for included, _ in ctx.includes:
            found = self.find_extension(included, exten, seen)
            if found is not None:
                return found
        return None

    def expand(self, text: str) -> set[str]:
        """Every value ``text`` can take with the variables the dialplan sets."""
        values = {text}
        for _ in range(5):  # variables made of variables, a few levels deep
            nxt: set[str] = set()
            for value in values:
                cut = _cut_of_list(value)
                if cut is not None and cut[0] in self.variables:
                    # ${CUT(LIST,\,,<any>)}: any one item of a comma list (one per worker).
                    name, start, end = cut
                    for listed in self.variables[name]:
                        for item in listed.split("\\,"):
                            nxt.add(value[:start] + item.strip() + value[end:])
                    continue
                m = _VAR.search(value)
                if not m or m.group(1) not in self.variables:
                    nxt.add(value)
                    continue
                for sub in self.variables[m.group(1)]:
                    nxt.add(value[:m.start()] + sub + value[m.end():])
            values = nxt
        return values


_CUT_LIST = re.compile(r"\$\{CUT\(([A-Za-z0-9_]+),\\,,")


def _cut_of_list(value: str) -> tuple[str, int, int] | None:
    """(variable, start, end) of a ``${CUT(NAME,\\,,...)}`` in ``value``, braces balanced."""
    m = _CUT_LIST.search(value)
    if m is None:
        return None
    depth = 0
    for i in range(m.start() + 1, len(value)):
        if value[i] == "{":
            depth += 1
        elif value[i] == "}":
            depth -= 1
            if depth == 0:
                return m.group(1), m.start(), i + 1
    return None


def _pattern(pattern: str) -> re.Pattern[str]:
    out, i, p = [], 0, pattern[1:]
    classes = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}
    while i < len(p):
        ch = p[i]
        if ch.upper() in classes:
            out.append(classes[ch.upper()])
        elif ch == "[":
            end = p.find("]", i)
            out.append("[" + re.sub(r"[\\^]", "", p[i + 1:end]) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def check(directory: Path, catalog_ids: set[str] | None = None) -> list[Problem]:
    """Problems with the StarPay dialplan in ``directory`` (errors and warnings)."""
    directory = Path(directory)
    ours = directory / "extensions_starpay.conf"
    if not ours.exists():
        return [Problem(Where(ours, 0), "extensions_starpay.conf is missing; run `ivr dialplan "
                        "install --to DIR` or give the directory that has it")]
    host = directory / "extensions.conf"
    entry = host if host.exists() else ours
    parsed = parse(entry)
    dp = Dialplan(parsed)
    problems = [p for p in dp.problems if OWN_FILES.match(p.where.file.name)]
    if ours not in parsed.files:
        problems.append(Problem(Where(host, 0), "extensions.conf does not #include "
                                "extensions_starpay.conf; `ivr dialplan install` adds it",
                                error=False))
        dp = Dialplan(parse(ours))
    queues = _names(directory / "queues.conf", skip={"general"})
    mailboxes = _mailboxes(directory / "voicemail.conf")
    for context, extens in REQUIRED.items():
        if context not in dp.contexts:
            problems.append(Problem(Where(ours, 0), f"context [{context}] is missing; phones "
                                    "and trunks are sent there"))
            continue
        for exten in extens:
            if dp.find_extension(context, exten) is None:
                problems.append(Problem(dp.contexts[context].where,
                                        f"[{context}] has no extension {exten}"))
    for ctx in dp.contexts.values():
        if not OWN_FILES.match(ctx.where.file.name):
            continue
        for included, where in ctx.includes:
            if included not in dp.contexts:
                problems.append(Problem(where, f"include => {included}: no such context"))
        for exten, steps in ctx.extensions.items():
            for i, step in enumerate(steps):
                problems += _check_step(dp, ctx, exten, steps, i, step, queues, mailboxes,
                                        catalog_ids)
    return problems


def _check_step(dp: Dialplan, ctx: Context, exten: str, steps: list[Step], i: int, step: Step,
                queues: set[str] | None, mailboxes: dict[str, set[str]] | None,
                catalog_ids: set[str] | None) -> list[Problem]:
    out: list[Problem] = []
    app = step.app.lower()
    w = step.where
    if app in ("agi", "eagi"):
        target = split_top(step.args, ",")[0].strip()
        for value in sorted(dp.expand(target)):
            problem = _agi_problem(value)
            if problem:
                out.append(Problem(w, f"AGI target {target!r}: {problem}"))
        if not any("AGISTATUS" in later.args and later.app.lower() in BRANCH_APPS
                   for later in steps[i + 1:]):
            out.append(Problem(w, "no AGISTATUS check after this AGI(): when the service is "
                               "down the caller would hear nothing; add e.g. GotoIf($[\"${"
                               "AGISTATUS}\" != \"SUCCESS\"]?starpay-fallback,s,1)"))
    if app in ("goto", "gotoif", "gosub", "gosubif"):
        targets = [step.args]
        if app.endswith("if"):  # GotoIf(condition?iftrue[:iffalse])
            parts = split_top(step.args, "?", 1)
            branches = parts[1] if len(parts) > 1 else ""
            targets = [t for t in split_top(branches, ":", 1) if t.strip()]
        for target in targets:
            problem = _goto_problem(dp, ctx.name, exten, target)
            if problem:
                out.append(Problem(w, f"{step.app}: {problem}"))
    if app == "queue" or "QUEUE_MEMBER(" in step.args:
        names = [split_top(step.args, ",")[0].strip()] if app == "queue" else []
        names += [m.group(1).strip() for m in _QUEUE_FN.finditer(step.args)]
        for name in names:
            if "${" in name:
                continue
            if queues is None:
                out.append(Problem(w, f"queue {name!r}: there is no queues.conf beside the "
                                   "dialplan (and app_queue won't load without one)"))
            elif name not in queues:
                out.append(Problem(w, f"queue {name!r} is not defined in queues.conf"))
    if app == "voicemail":
        for box in split_top(step.args, ",")[0].split("&"):
            number, _, vmctx = box.strip().partition("@")
            vmctx = vmctx or "default"
            if "${" in box:
                continue
            if mailboxes is None:
                out.append(Problem(w, f"mailbox {box!r}: there is no voicemail.conf"))
            elif number not in mailboxes.get(vmctx, set()):
                out.append(Problem(w, f"mailbox {number!r} is not in context [{vmctx}] of "
                                   "voicemail.conf"))
    if catalog_ids is not None:
        for m in _PROMPT.finditer(step.args):
            if m.group(1) not in catalog_ids:
                out.append(Problem(w, f"prompt starpay/{m.group(1)} is not in "
                                   "prompts/catalog.toml"))
    return out


def _agi_problem(url: str) -> str | None:
    unset = _VAR.search(url)
    if unset:
        return f"uses {unset.group(0)}, which no Set() or [globals] in the dialplan sets"
    if not url.startswith(("agi://", "hagi://")):
        return f"{url!r} is not an agi:// or hagi:// (FastAGI) URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r}: {exc}"
    if not parts.hostname:
        return f"{url!r} has no host"
    if port is not None and not 0 < port < 65536:
        return f"{url!r}: port {port} out of range"
    if parts.scheme == "hagi" and port is not None:
        return f"{url!r}: hagi:// looks up DNS SRV records and takes no port"
    if not parts.path.strip("/"):
        return f"{url!r} names no script (e.g. /pay)"
    return None


def _goto_problem(dp: Dialplan, context: str, exten: str, target: str) -> str | None:
    parts = [p.strip() for p in split_top(target.strip(), ",")]
    if any("${" in p or "$[" in p for p in parts) or not parts[-1]:
        return None  # decided at run time
    if len(parts) > 3:
        return f"target {target!r} has more than context,extension,priority"
    prio = re.sub(r"\(.*\)$", "", parts[-1])  # Gosub(ctx,ext,1(args))
    if len(parts) == 3:
        context, exten = parts[0], parts[1]
    elif len(parts) == 2:
        exten = parts[0]
    if context not in dp.contexts:
        return f"context [{context}] is not defined"
    steps = dp.find_extension(context, exten)
    if steps is None:
        return f"extension {exten} is not in [{context}]"
    if prio.isdigit():
        if all(s.priority != int(prio) for s in steps):
            return f"{exten}@{context} has no priority {prio}"
    elif all(s.label != prio for s in steps):
        return f"{exten}@{context} has no label {prio!r}"
    return None


def _names(path: Path, skip: set[str]) -> set[str] | None:
    if not path.exists():
        return None
    return {s.name for s in parse(path).sections if s.name not in skip}


def _mailboxes(path: Path) -> dict[str, set[str]] | None:
    if not path.exists():
        return None
    out: dict[str, set[str]] = {}
    for section in parse(path).sections:
        if section.name in ("general", "zonemessages"):
            continue
        out.setdefault(section.name, set()).update(i.name for i in section.items)
    return out
