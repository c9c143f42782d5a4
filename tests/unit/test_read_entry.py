"""Entries collected in one command: AGISession.read_entry's EXEC Read + GET FULL VARIABLE,
FakeAsterisk's Read (as app_read.c and main/app.c do it), its live caller that loses keys
typed while no command runs, the Prompter on top, and the QA side that finds prompts
inside a Read list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ivr.agi import AGIServer, AGISession
from ivr.agi.errors import AGICommandError, AGIHangup
from ivr.flows.prompter import Prompter, TooManyTries
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.qa.scenario import prompts_of, sound_prompts
from ivr.qa.slow_session import SlowSession
from ivr.qa.steps import find_prompts

Flow = Callable[[AGISession], Awaitable[None]]


@asynccontextmanager
async def serving(flow: Flow) -> AsyncIterator[AGIServer]:
    server = AGIServer({"pay": flow}, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def one_call(flow: Flow, **kw: Any) -> FakeAsterisk:
    async with serving(flow) as server:
        fake = FakeAsterisk(server.port, **kw)
        await fake.run()
    return fake


async def test_read_entry_is_one_read_and_one_variable_read() -> None:
    got: list[tuple[str, str]] = []

    async def flow(s: AGISession) -> None:
        got.append(await s.read_entry(["starpay/a", "starpay/b"], 20, 5000))
        got.append(await s.read_entry(["starpay/menu"], 1, 1500, terminators=""))

    fake = await one_call(flow, keys="84*17#5")
    assert got == [("84*17", "OK"), ("5", "OK")]
    assert [c.raw for c in fake.transcript] == [
        "EXEC Read STARPAY_KEYS,starpay/a&starpay/b,20,,1,5",
        "GET FULL VARIABLE ${STARPAY_KEYS}:${READSTATUS}",
        "EXEC Read STARPAY_KEYS,starpay/menu,1,t,1,1.5",
        "GET FULL VARIABLE ${STARPAY_KEYS}:${READSTATUS}"]
    # The key cut the first piece: the second never started.
    assert fake.streamed == ["starpay/a", "starpay/menu"]


@pytest.mark.parametrize("keys, max_digits, terminators, expected", [
    ("", 5, "#", ("", "TIMEOUT")),  # nothing: the timeout after the last piece
    ("123", 5, "#", ("123", "TIMEOUT")),  # a pause after some keys: what was typed
    ("1234567", 5, "#", ("12345", "OK")),  # max digits ends it
    ("#", 5, "#", ("", "OK")),  # the terminator alone: empty, OK
    ("12*4#", 9, "#", ("12*4", "OK")),  # * is collected like a digit
    ("#", 1, "", ("#", "OK")),  # no terminator: # is a key like any other
    ("12*", 9, "*", ("12", "OK")),  # t(*): * ends it
])
async def test_fake_read_follows_asterisk(keys: str, max_digits: int, terminators: str,
                                          expected: tuple[str, str]) -> None:
    got: list[tuple[str, str]] = []

    async def flow(s: AGISession) -> None:
        got.append(await s.read_entry(["starpay/a", "starpay/b", "starpay/c"], max_digits,
                                      500, terminators=terminators))

    fake = await one_call(flow, keys=keys)
    assert got == [expected]
    assert fake.streamed == (["starpay/a"] if keys else
                             ["starpay/a", "starpay/b", "starpay/c"])


async def test_a_key_between_two_pieces_counts() -> None:
    """A key pressed as the second piece starts cuts it, and the rest of the entry follows."""
    got: list[tuple[str, str]] = []

    async def flow(s: AGISession) -> None:
        got.append(await s.read_entry(["starpay/a", "starpay/b", "starpay/c"], 5, 500))

    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        if sound == "starpay/b":
            fake.press("10001")

    fake = await one_call(flow, on_sound=on_sound)
    assert got == [("10001", "OK")]
    assert fake.streamed == ["starpay/a", "starpay/b"]


async def test_hangup_during_read_and_a_missing_last_file() -> None:
    seen: list[str] = []

    async def hangs_up(s: AGISession) -> None:
        try:
            await s.read_entry(["starpay/a"], 5, 500)
        except AGIHangup:
            seen.append("hangup")

    fake = await one_call(hangs_up, hangup_at=1)
    assert seen == ["hangup"] and fake.variables["READSTATUS"] == "HANGUP"

    async def missing(s: AGISession) -> None:
        with pytest.raises(AGICommandError, match="READSTATUS=ERROR"):
            await s.read_entry(["starpay/a", "starpay/gone"], 5, 500)
        seen.append("error")

    await one_call(missing, keys="", missing_files=["starpay/gone"])
    assert seen[-1] == "error"


async def test_read_entry_refuses_what_read_cannot_take() -> None:
    async def flow(s: AGISession) -> None:
        for bad in ([], ["a,b"], ["a&b"], ["a b"]):
            with pytest.raises(ValueError):
                await s.read_entry(bad, 5, 500)
        with pytest.raises(ValueError):
            await s.read_entry(["a"], 0, 500)
        with pytest.raises(ValueError):
            await s.read_entry(["a"], 5, 0)

    fake = await one_call(flow)
    assert fake.transcript == []


async def test_live_caller_loses_keys_typed_between_commands() -> None:
    """Key by key with a pause between commands loses keys; one Read keeps them all."""
    got: dict[str, str] = {}
    typed = asyncio.Event()

    async def key_by_key(s: AGISession) -> None:
        keys = await s.stream_file("starpay/ask", "0123456789#") or ""
        await typed.wait()  # the service is busy while the caller types on
        while (key := await s.wait_for_digit(300)) and key != "#":
            keys += key
        got["key by key"] = keys

    async def one_read(s: AGISession) -> None:
        got["one read"] = (await s.read_entry(["starpay/ask"], 20, 300))[0]
        await typed.wait()

    for flow in (key_by_key, one_read):
        typed.clear()
        async with serving(flow) as server:
            asked = asyncio.Event()
            fake = FakeAsterisk(server.port, live=True, drop_untaken_keys=True,
                                on_sound=lambda sound, fake, asked=asked: asked.set())
            call = asyncio.ensure_future(fake.run())
            await asked.wait()
            assert fake.in_flight
            for key in "100001#":
                fake.press(key)
                await asyncio.sleep(0.02)
            typed.set()
            await call
    assert got == {"key by key": "1", "one read": "100001"}


async def test_prompter_says_sorry_and_asks_again_in_one_command() -> None:
    """A key pressed during "Sorry, we did not get your entry" answers the question."""
    got: list[str] = []

    async def flow(s: AGISession) -> None:
        p = Prompter(s, tries=3, first_key_ms=500)
        got.append(await p.choose(["main_menu"], "123"))
        with pytest.raises(TooManyTries):
            await p.collect(["ask_zip"], max_digits=5)

    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        if sound == "starpay/no_input" and not got:
            fake.press("2")

    fake = await one_call(flow, on_sound=on_sound)
    assert got == ["2"]
    reads = [c.raw for c in fake.transcript if c.verb == "EXEC"]
    assert reads[:2] == ["EXEC Read STARPAY_KEYS,starpay/main_menu,1,t,1,0.5",
                         "EXEC Read STARPAY_KEYS,starpay/no_input&starpay/main_menu,1,t,1,0.5"]
    # Three silent tries at the entry: the last "sorry" stands alone before giving up.
    assert prompts_of([c.raw for c in fake.transcript]) == [
        "main_menu", "no_input", "main_menu", "ask_zip", "no_input", "ask_zip", "no_input",
        "ask_zip", "no_input"]
    assert fake.transcript[-1].raw == 'STREAM FILE starpay/no_input ""'


async def test_slow_session_pauses_between_commands() -> None:
    stamps: list[float] = []

    async def flow(s: AGISession) -> None:
        slow = SlowSession(s, 0.1)
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await slow.set_variable("X", 1)
            stamps.append(loop.time())

    await one_call(flow)
    assert stamps[1] - stamps[0] >= 0.09 and stamps[2] - stamps[1] >= 0.09


def test_qa_sees_every_prompt_of_a_read_once() -> None:
    read = "EXEC Read STARPAY_KEYS,starpay/balance_is&starpay/num_84&beep&starpay/main_menu,1,t,1,5"
    assert sound_prompts(read) == ["balance_is", "num_84", "main_menu"]
    assert sound_prompts("GET FULL VARIABLE ${STARPAY_KEYS}:${READSTATUS}") == []
    cmds = ['STREAM FILE starpay/greeting ""', read, "GET FULL VARIABLE ${X}",
            'STREAM FILE starpay/main_menu ""']
    assert prompts_of(cmds) == ["greeting", "balance_is", "num_84", "main_menu", "main_menu"]
    # Two expects in a row may both be in one Read: the second searches on inside it.
    first = find_prompts(cmds, (0, 0), ["balance_is"])
    assert first == (1, 0)
    assert find_prompts(cmds, (first[0], first[1] + 1), ["main_menu"]) == (1, 2)
    assert find_prompts(cmds, (1, 3), ["main_menu"]) == (3, 0)
