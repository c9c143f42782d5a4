"""Call scenarios: a small declarative YAML format for simulated *PAY calls.

One file holds one scenario (or a list of them)::

    name: trusted caller pays the full balance
    caller: "+15551234567"      # E.164 caller ID, or `withheld`
    attest: A                   # STIR/SHAKEN attestation A/B/C; absent = unverified
    at: "10:00"                 # center's local time (business hours); optional, see below
    agents: 1                   # free agents in the billing queue (default 0)
    seed: demo                  # `demo` (default: the `ivr db seed --demo` accounts) or `none`
    accounts: []                # extra accounts for this scenario only (see below)
    call: {verify_with: pin}    # [call] settings for this scenario only (default: none)
    slow_ms: 0                  # test hook: the service pauses this long between commands
    steps:
      - expect: greeting        # wait until the service plays starpay/greeting
      - expect: main_menu
      - press: "1"              # keys pressed as soon as the prompt above starts
      - expect: pay_confirm_press
      - press: "1"
      - expect: [approved, confirmation_number]   # a list: these prompts in a row
      - hangup                  # the caller hangs up now
    expect:
      payment: {state: approved, amount: "84.17"}   # the last payment of the call; or `none`
      call_outcome: paid        # the call record's outcome (paid, agent, callback, ...)
      next: queue               # STARPAY_NEXT: queue | voicemail | none
      callback: scheduled       # scheduled | none
      language: en              # the call record's language

Steps run in order. ``expect`` matches the prompt id in the sound a STREAM FILE / GET DATA
(or CONTROL STREAM FILE) command names (``starpay/<id>``), or in the ``&`` list of an
``EXEC Read`` (a question: its prompts and the keys in one command), searching forward
from the last match, so the pieces in between (money, digits) need not be listed.
``press`` sends DTMF at once: right after an ``expect`` the keys land while that prompt
plays, so they interrupt it when the prompt accepts them, as a caller who knows the menu
would. ``type: "100001#"`` types the keys at a caller's own pace, 80 ms apart, whatever
the service is doing meanwhile: a key that lands while no command runs is lost, as on a
phone. ``wait: N`` lets N seconds pass (on the emulator: lets the current prompt play out;
a question then still waits for its keys) before the next step.

``slow_ms``: a test hook; the service pauses this long before every AGI command (as a GC
pause, a blocked loop or a burst would), so scenarios can show that no key typed meanwhile
is lost.

``at``: ``"HH:MM"`` is that time on a normal Wednesday (2026-12-02) in the center's time zone;
a full ISO date-time (``2026-12-05T18:30``) picks the day too. The call's clock starts there.
Absent: the real clock.

``accounts`` entries: ``account`` (number), ``phone`` (E.164, or a list), ``zip``,
``balance`` ("50.00"), ``language`` (en), ``due_in_days`` (14; negative = past due, null = no
statement), ``card`` (``{token, brand, last4}`` with a sandbox token, or ``none``).

``call``: keys of the ``[call]`` config section (``verify_with``, ``verify``, ...) that this
scenario's calls run with, over the config the run was started with; checked like the config.

:func:`load` validates everything and raises :class:`ScenarioError` naming the file and the
step, so a typo in a prompt id fails before any call is placed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from ivr.config import CallConfig, Config
from ivr.prompts.catalog import Catalog

# A weekday that is no US holiday: "at: 10:00" is this day in the center's zone.
REFERENCE_DAY = dt.date(2026, 12, 2)
KEYS = set("0123456789*#ABCD")
OUTCOME_KEYS = {"payment", "call_outcome", "next", "callback", "language"}
TOP_KEYS = {"name", "caller", "attest", "at", "agents", "seed", "accounts", "call", "steps",
            "expect", "slow_ms"}
MAX_SLOW_MS = 5000
ACCOUNT_KEYS = {"account", "phone", "zip", "balance", "language", "due_in_days", "card", "name"}
_TIME = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")


class ScenarioError(ValueError):
    """A scenario file cannot be used; the message names the file and the step."""


@dataclass(frozen=True)
class Step:
    """``kind`` is expect | press | type | wait | hangup; ``prompts`` for expect (a run of
    ids), ``keys`` for press and type."""

    index: int  # 1-based, for messages
    kind: str
    prompts: tuple[str, ...] = ()
    keys: str = ""
    seconds: float = 0.0

    def describe(self) -> str:
        if self.kind == "expect":
            ids = self.prompts[0] if len(self.prompts) == 1 else list(self.prompts)
            return f"step {self.index} (expect: {ids})"
        if self.kind in ("press", "type"):
            return f'step {self.index} ({self.kind}: "{self.keys}")'
        if self.kind == "wait":
            return f"step {self.index} (wait: {self.seconds:g})"
        return f"step {self.index} (hangup)"


@dataclass(frozen=True)
class PaymentExpect:
    state: str | None = None  # None in `payment: none`
    amount_minor: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What must hold once the call is over; None fields are not checked."""

    payment: PaymentExpect | None = None  # PaymentExpect() with state None = no payment
    call_outcome: str | None = None
    next: str | None = None  # "queue" | "voicemail" | "none"
    callback: str | None = None  # "scheduled" | "none"
    language: str | None = None


@dataclass(frozen=True)
class AccountSpec:
    account: str
    phones: tuple[str, ...]
    zip_code: str = "12345"
    balance_minor: int = 5000
    language: str = "en"
    due_in_days: int | None = 14
    card: tuple[str, str, str] | None = ("tok_sandbox_approve", "visa", "1111")
    name: str = "QA Caller"


@dataclass(frozen=True)
class Scenario:
    name: str
    file: Path
    caller: str | None  # None: withheld
    attest: str | None
    at: dt.time | dt.datetime | None
    agents: int
    seed: str
    accounts: tuple[AccountSpec, ...]
    steps: tuple[Step, ...]
    expect: Outcome = field(default_factory=Outcome)
    call: dict[str, Any] = field(default_factory=dict)  # [call] overrides, checked
    slow_ms: int = 0  # the service's pause before each AGI command (a test hook)

    def call_config(self, base: CallConfig) -> CallConfig:
        """``base`` with this scenario's ``call:`` settings (a copy: base is shared)."""
        return dataclasses.replace(base, **self.call)

    @property
    def callerid(self) -> str:
        """The caller ID as Asterisk would send it (``anonymous`` when withheld)."""
        return self.caller or "anonymous"

    def start_time(self, tz: dt.tzinfo) -> dt.datetime | None:
        if self.at is None:
            return None
        if isinstance(self.at, dt.datetime):
            return self.at if self.at.tzinfo else self.at.replace(tzinfo=tz)
        return dt.datetime.combine(REFERENCE_DAY, self.at, tzinfo=tz)


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files named by ``paths``: files as given, directories' *.yaml/*.yml sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml"))
        elif p.exists():
            out.append(p)
        else:
            raise ScenarioError(f"{p}: no such file or directory")
    return out


def load_all(paths: Iterable[str | Path], catalog: Catalog | None = None) -> list[Scenario]:
    catalog = catalog or Catalog.load()
    scenarios = [s for f in discover(paths) for s in load(f, catalog)]
    check_unique_names(scenarios)
    return scenarios


def check_unique_names(scenarios: Iterable[Scenario]) -> None:
    """Names are the report's keys: two scenarios may not share one."""
    seen: dict[str, Path] = {}
    for s in scenarios:
        if s.name in seen:
            raise ScenarioError(f"{s.file}: scenario name {s.name!r} is also used in "
                                f"{seen[s.name]}")
        seen[s.name] = s.file


def load(path: str | Path, catalog: Catalog | None = None) -> list[Scenario]:
    """The scenarios in one file (a mapping, or a list of mappings)."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}: not valid YAML: {_yaml_problem(exc)}") from None
    catalog = catalog or Catalog.load()
    docs = data if isinstance(data, list) else [data]
    return [parse(doc, file, catalog, i if len(docs) > 1 else None)
            for i, doc in enumerate(docs, 1)]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, e.g. 'line 4, column 3: mapping values are not allowed here' (yaml's
    own text names the string it parsed, not the file)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return str(exc)
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: " + (
        f"{problem} ({context})" if context else problem)


def parse(doc: Any, file: Path, catalog: Catalog, number: int | None = None) -> Scenario:
    where = f"{file}" + (f" (scenario {number})" if number else "")

    def fail(msg: str) -> ScenarioError:
        return ScenarioError(f"{where}: {msg}")

    if not isinstance(doc, dict):
        raise fail("a scenario is a mapping with name, caller, steps and expect")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise fail(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("`name` is required (a short sentence)")
    where = f"{file} [{name}]"
    caller = _caller(doc.get("caller"), fail)
    attest = doc.get("attest")
    if attest is not None and str(attest).upper() not in ("A", "B", "C"):
        raise fail(f"`attest` is A, B or C (or absent), not {attest!r}")
    agents = doc.get("agents", 0)
    if not isinstance(agents, int) or isinstance(agents, bool) or not 0 <= agents <= 1:
        raise fail(f"`agents` is 0 or 1 (free agents in the billing queue), not {agents!r}")
    seed = doc.get("seed", "demo")
    if seed not in ("demo", "none"):
        raise fail(f"`seed` is demo or none, not {seed!r}")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail("`steps` is a non-empty list (expect / press / type / wait / hangup)")
    steps = tuple(_step(i, s, catalog, fail) for i, s in enumerate(raw_steps, 1))
    slow_ms = doc.get("slow_ms", 0)
    if not isinstance(slow_ms, int) or isinstance(slow_ms, bool) \
            or not 0 <= slow_ms <= MAX_SLOW_MS:
        raise fail(f"`slow_ms` is a whole number of milliseconds, 0 to {MAX_SLOW_MS}, "
                   f"not {slow_ms!r}")
    return Scenario(name=name.strip(), file=file, caller=caller,
                    attest=str(attest).upper() if attest is not None else None,
                    at=_at(doc.get("at"), fail), agents=agents, seed=seed,
                    accounts=tuple(_account(i, a, fail)
                                   for i, a in enumerate(doc.get("accounts") or [], 1)),
                    steps=steps, expect=_outcome(doc.get("expect"), fail),
                    call=_call(doc.get("call"), fail), slow_ms=slow_ms)


def _call(raw: Any, fail: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail("`call` is a mapping of [call] settings, e.g. {verify_with: pin}")
    known = {f.name: type(f.default) for f in dataclasses.fields(CallConfig)
             if f.default is not dataclasses.MISSING}
    for key, value in raw.items():
        if key not in known:
            raise fail(f"call.{key} is no [call] setting; allowed: {sorted(known)}")
        if type(value) is not known[key]:
            raise fail(f"call.{key} is {value!r}; expected {known[key].__name__}")
    wrong = [p for p in Config(call=dataclasses.replace(CallConfig(), **raw)).errors()
             if p.startswith("call.")]
    if wrong:
        raise fail("; ".join(wrong))
    return dict(raw)


def _caller(value: Any, fail: Any) -> str | None:
    if value is None:
        raise fail("`caller` is required: an E.164 number in quotes, or withheld")
    text = str(value).strip()
    if text.lower() in ("withheld", "anonymous"):
        return None
    if not re.fullmatch(r"\+?\d{3,15}", text):
        raise fail(f"`caller` {value!r} is not a phone number (write it in quotes: "
                   '"+15551234567") or withheld')
    return text


def _at(value: Any, fail: Any) -> dt.time | dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, int):  # YAML 1.1 reads an unquoted 10:00 as sexagesimal 600
        return dt.time(value // 60 % 24, value % 60)
    text = str(value).strip()
    try:
        if _TIME.match(text):
            return dt.time.fromisoformat(text.zfill(5) if len(text) == 4 else text)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    raise fail(f'`at` {value!r} is not a time of day ("10:00") or ISO date-time '
               '("2026-12-05T18:30")')


def _step(index: int, raw: Any, catalog: Catalog, fail: Any) -> Step:
    here = f"step {index}"
    if raw == "hangup":
        return Step(index, "hangup")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise fail(f"{here}: {raw!r} is not a step; write `- expect: <prompt id>`, "
                   '`- press: "1"`, `- type: "123#"`, `- wait: 2` or `- hangup`')
    ((kind, value),) = raw.items()
    if kind == "expect":
        ids = tuple(value) if isinstance(value, list) else (value,)
        if not ids or not all(isinstance(i, str) for i in ids):
            raise fail(f"{here}: expect takes a prompt id or a list of them")
        for pid in ids:
            if pid not in catalog:
                near = [c for c in catalog.ids if pid.split("_")[0] in c][:4]
                hint = f" (did you mean {', '.join(near)}?)" if near else ""
                raise fail(f"{here}: expect: {pid!r} is not a prompt id in the catalog{hint}")
        return Step(index, "expect", prompts=ids)
    if kind in ("press", "type"):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value or set(value) - KEYS:
            raise fail(f"{here}: {kind} takes keypad keys in quotes (0-9 * # A-D), "
                       f"not {value!r}")
        return Step(index, kind, keys=value)
    if kind == "wait":
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 60:
            raise fail(f"{here}: wait takes seconds between 0 and 60, not {value!r}")
        return Step(index, "wait", seconds=float(value))
    if kind == "hangup":
        return Step(index, "hangup")
    raise fail(f"{here}: unknown step {kind!r} (expect, press, type, wait, hangup)")


def money_minor(value: Any, what: str, fail: Any) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise fail(f"{what} {value!r} is not an amount like \"84.17\"") from None
    if amount != amount.quantize(Decimal("0.01")) or amount < 0:
        raise fail(f"{what} {value!r} is not an amount like \"84.17\"")
    return int(amount * 100)


def _outcome(raw: Any, fail: Any) -> Outcome:
    if raw is None:
        return Outcome()
    if not isinstance(raw, dict):
        raise fail("`expect` is a mapping: payment, call_outcome, next, callback, language")
    unknown = set(raw) - OUTCOME_KEYS
    if unknown:
        raise fail(f"expect: unknown key(s) {sorted(unknown)}; allowed: {sorted(OUTCOME_KEYS)}")
    payment = None
    if "payment" in raw:
        p = raw["payment"]
        if p in (None, "none"):
            payment = PaymentExpect()
        elif isinstance(p, dict) and set(p) <= {"state", "amount"} and p.get("state"):
            amount = p.get("amount")
            payment = PaymentExpect(str(p["state"]), None if amount is None else
                                    money_minor(amount, "expect: payment: amount", fail))
        else:
            raise fail('expect: payment is none or {state: approved, amount: "84.17"}')
    nxt = raw.get("next")
    if nxt is not None and nxt not in ("queue", "voicemail", "none"):
        raise fail(f"expect: next is queue, voicemail or none, not {nxt!r}")
    callback = raw.get("callback")
    if callback is not None and callback not in ("scheduled", "none"):
        raise fail(f"expect: callback is scheduled or none, not {callback!r}")
    outcome = raw.get("call_outcome")
    language = raw.get("language")
    return Outcome(payment=payment, call_outcome=None if outcome is None else str(outcome),
                   next=nxt, callback=callback,
                   language=None if language is None else str(language))


def _account(index: int, raw: Any, fail: Any) -> AccountSpec:
    here = f"accounts[{index}]"
    if not isinstance(raw, dict) or not raw.get("account") or not raw.get("phone"):
        raise fail(f"{here}: needs at least account and phone")
    unknown = set(raw) - ACCOUNT_KEYS
    if unknown:
        raise fail(f"{here}: unknown key(s) {sorted(unknown)}; allowed: {sorted(ACCOUNT_KEYS)}")
    phones = raw["phone"] if isinstance(raw["phone"], list) else [raw["phone"]]
    card_raw = raw.get("card", "default")
    card: tuple[str, str, str] | None
    if card_raw in (None, "none"):
        card = None
    elif card_raw == "default":
        card = AccountSpec.card
    elif isinstance(card_raw, dict) and card_raw.get("token"):
        card = (str(card_raw["token"]), str(card_raw.get("brand", "visa")),
                str(card_raw.get("last4", "1111")))
    else:
        raise fail(f"{here}: card is none or {{token: tok_sandbox_approve, brand: visa, "
                   "last4: \"1111\"}")
    due = raw.get("due_in_days", 14)
    if due is not None and not isinstance(due, int):
        raise fail(f"{here}: due_in_days is a whole number of days or null")
    return AccountSpec(account=str(raw["account"]), phones=tuple(str(p) for p in phones),
                       zip_code=str(raw.get("zip", "12345")),
                       balance_minor=money_minor(raw.get("balance", "50.00"),
                                                 f"{here}: balance", fail),
                       language=str(raw.get("language", "en")), due_in_days=due, card=card,
                       name=str(raw.get("name", "QA Caller")))


_ONE_SOUND = re.compile(r'(?i)\s*(?:CONTROL STREAM FILE|STREAM FILE|GET DATA|GET OPTION)\s+'
                        r'"?([^\s"]+)')
# EXEC <app> <args>: the apps whose arguments hold an &-list of sounds, and where it is
# (Read's first argument is the variable it fills).
_PLAYING_APPS = {"read": 1, "playback": 0, "background": 0, "controlplayback": 0}
_EXEC = re.compile(r'(?i)\s*EXEC\s+(\w+)\s+"?([^\s"]*)')
_PROMPT = re.compile(r"starpay/([a-z0-9_-]+)")


def sound_files(command: str) -> list[str]:
    """The sound files a raw AGI command plays, in order: one for STREAM FILE and its
    kin, the whole ``&`` list of an ``EXEC Read`` (or Playback, Background)."""
    m = _ONE_SOUND.match(command)
    if m:
        return [m.group(1)]
    m = _EXEC.match(command)
    if m and (pos := _PLAYING_APPS.get(m.group(1).lower())) is not None:
        fields = m.group(2).split(",")
        if pos < len(fields):
            return [f for f in fields[pos].split("&") if f]
    return []


def sound_prompts(command: str) -> list[str]:
    """The prompt ids a raw AGI command plays, in order (``EXEC Read STARPAY_KEYS,starpay/
    balance_is&starpay/main_menu,1,t,1,5`` → ``balance_is, main_menu``)."""
    return [m.group(1) for f in sound_files(command) if (m := _PROMPT.fullmatch(f))]


def sound_prompt(command: str) -> str | None:
    """The first prompt id a raw AGI command plays (``STREAM FILE starpay/main_menu "123"``
    → ``main_menu``), or None when it plays no StarPay prompt."""
    ids = sound_prompts(command)
    return ids[0] if ids else None


def prompts_of(commands: Sequence[str]) -> list[str]:
    """Every prompt id the commands play, in order; each command's once."""
    return [p for c in commands for p in sound_prompts(c)]
