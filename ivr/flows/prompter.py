"""Plays prompt ids and collects keys, with the house rules for retries.

The rules, in one place so every step behaves alike:

* A prompt is a list of prompt ids; each plays as the sound ``starpay/<id>`` in the
  channel's language. A key press interrupts the rest of the list (callers who know the
  menu need not wait), and that key counts as the answer.
* Every question (a menu, an entry) is ONE Asterisk command that plays the whole list and
  collects the keys (:meth:`CallSession.read_entry`, Asterisk's Read): Asterisk discards
  DTMF that arrives while no AGI command runs, so a question asked file by file and read
  key by key loses every key typed in a gap, and gaps widen when the service is slow. The
  "sorry" prompt of a retry is the head of the next question's list, so a key pressed
  during "Sorry, we did not get your entry" answers the question that follows. Any key
  interrupts a question (Read knows no escape digits): a key a menu does not offer is an
  invalid answer.
* Announcements that are no question (:meth:`Prompter.play`) stay STREAM FILE by STREAM
  FILE: keys are not taken there, or only a few escape digits where an offer rides on an
  announcement ("para español, oprima 9"), and such a key landing in the instant between
  two pieces is lost.
* Invalid or no input: say so and re-prompt; after ``tries`` failures raise
  :class:`TooManyTries` so the caller reaches a person (or the after-hours path) instead of
  looping forever.
* In menus, 0 means "a person" (:class:`WantsAgent`) and, where offered, * means "back"
  (:class:`GoBack`).

Every choice and outcome is appended to ``path`` (for the call record); keypad input that
identifies someone (account numbers, ZIP, PIN) is never put there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

SOUND_PREFIX = "starpay/"
DIGITS = "0123456789"
ALL_KEYS = DIGITS + "*#"

INVALID_PROMPT = "invalid_input"
NO_INPUT_PROMPT = "no_input"


class CallSession(Protocol):
    """The part of :class:`ivr.agi.AGISession` the flows use."""

    args: list[str]

    @property
    def callerid(self) -> str | None: ...
    @property
    def uniqueid(self) -> str: ...
    @property
    def channel(self) -> str: ...

    async def answer(self) -> None: ...
    async def hangup(self, channel: str | None = None) -> None: ...
    async def stream_file(self, name: str, escape_digits: str = "") -> str | None: ...
    async def wait_for_digit(self, timeout_ms: int) -> str | None: ...
    async def read_entry(self, files: Sequence[str], max_digits: int, timeout_ms: int,
                         terminators: str = "#") -> tuple[str, str]: ...
    async def set_variable(self, name: str, value: object) -> None: ...


class FlowExit(Exception):
    """Base of the ways a caller leaves a step other than by answering it."""


class TooManyTries(FlowExit):
    """Invalid or no input ``tries`` times in a row."""


class WantsAgent(FlowExit):
    """The caller pressed 0 for a person."""


class GoBack(FlowExit):
    """The caller pressed * to go back."""


class Prompter:
    def __init__(self, session: CallSession, *, tries: int = 3, first_key_ms: int = 5000,
                 next_key_ms: int = 3000, path: list[str] | None = None) -> None:
        self.session = session
        self.tries = max(1, tries)
        # Read has one timeout for the first key and between keys: first_key_ms. Kept for
        # callers that still wait key by key (wait_for_digit) after an announcement.
        self.first_key_ms = first_key_ms
        self.next_key_ms = next_key_ms
        self.path = path if path is not None else []

    def note(self, step: str) -> None:
        self.path.append(step)

    async def play(self, ids: Sequence[str], escape: str = "") -> str | None:
        """Play ids in order; return the key that interrupted them, or None.

        For announcements only: a question goes through :meth:`choose`, :meth:`key` or
        :meth:`read`, which take keys in one command.
        """
        for pid in ids:
            key = await self.session.stream_file(SOUND_PREFIX + pid, escape)
            if key:
                return key
        return None

    async def key(self, ids: Sequence[str]) -> str | None:
        """Play ids and wait for one key, in one command; the key (any) or None."""
        keys, _ = await self.session.read_entry([SOUND_PREFIX + p for p in ids], 1,
                                                self.first_key_ms, terminators="")
        return keys or None

    async def choose(self, ids: Sequence[str], options: str, *, agent: bool = True,
                     back: bool = False, replay: Sequence[str] = ()) -> str:
        """Play a menu and return one of ``options`` (single keys).

        ``replay`` is played before the menu on a retry instead of the whole prompt
        (e.g. just the choices, without the balance again); empty means the same prompt.
        """
        sorry: list[str] = []
        for attempt in range(self.tries):
            key = await self.key([*sorry, *(ids if attempt == 0 or not replay else replay)])
            if key == "0" and agent and "0" not in options:
                self.note("agent-key")
                raise WantsAgent()
            if key == "*" and back and "*" not in options:
                raise GoBack()
            if key and key in options:
                return key
            sorry = [INVALID_PROMPT if key else NO_INPUT_PROMPT]
        await self.play(sorry)
        raise TooManyTries()

    async def collect(self, ids: Sequence[str], *, max_digits: int, min_digits: int = 1,
                      keys: str = DIGITS, end: str = "#",
                      check: Callable[[str], bool] | None = None,
                      invalid: Sequence[str] = ()) -> str:
        """Collect a variable-length entry ended by ``end`` (or by a pause, or max length).

        ``check`` rejects entries (counting as a failed try); ``invalid`` is then played
        instead of the generic "not valid" prompt, e.g. to explain the keypad rule.
        """
        sorry: list[str] = []
        for _ in range(self.tries):
            entry = await self.read([*sorry, *ids], max_digits=max_digits, keys=keys, end=end)
            if entry and len(entry) >= min_digits and (check is None or check(entry)):
                return entry
            sorry = (list(invalid) or [INVALID_PROMPT]) if entry else [NO_INPUT_PROMPT]
        await self.play(sorry)
        raise TooManyTries()

    async def read(self, ids: Sequence[str], *, max_digits: int, keys: str = DIGITS,
                   end: str = "#") -> str:
        """One entry, no validation: keys until ``end``, a pause, or ``max_digits``; the
        prompt and every key in one command. Keys outside ``keys`` are dropped."""
        got, _ = await self.session.read_entry([SOUND_PREFIX + p for p in ids], max_digits,
                                               self.first_key_ms, terminators=end)
        return "".join(k for k in got if k in keys)
