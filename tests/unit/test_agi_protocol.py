"""The FastAGI wire format, checked against byte transcripts of what Asterisk sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.agi import protocol
from ivr.agi.errors import AGICommandError, AGIDeadChannel, AGIHangup, AGIProtocolError
from ivr.agi.protocol import build_command, parse_reply, quote, split_command

# A header block in the shape res_agi's setup_env() writes it (empty accountcode included).
HEADER_BLOCK = (
    b"agi_network: yes\n"
    b"agi_network_script: pay\n"
    b"agi_request: agi://127.0.0.1:4573/pay\n"
    b"agi_channel: Local/*PAY@ivr-00000001;2\n"
    b"agi_language: en\n"
    b"agi_uniqueid: 1700000000.7\n"
    b"agi_callerid: +15551234567\n"
    b"agi_calleridname: unknown\n"
    b"agi_accountcode: \n"
    b"agi_arg_1: A\n"
    b"agi_arg_2: two words\n"
    b"\n"
)


def test_header_block_parses_keys_values_and_args() -> None:
    headers, args = protocol.parse_headers(protocol.split_header_block(HEADER_BLOCK))
    assert headers["agi_network_script"] == "pay"
    assert headers["agi_request"] == "agi://127.0.0.1:4573/pay"  # ':' inside the value
    assert headers["agi_accountcode"] == ""
    assert args == ["A", "two words"]


def test_args_stop_at_a_gap() -> None:
    assert protocol.header_args({"agi_arg_1": "a", "agi_arg_3": "c"}) == ["a"]


@pytest.mark.parametrize("line", ["GET / HTTP/1.1", "agi_x", "Agi_Upper: 1", ": value",
                                  "agi_ space: 1"])
def test_malformed_header_lines_are_rejected(line: str) -> None:
    with pytest.raises(AGIProtocolError):
        protocol.parse_header_line(line)


def test_binary_header_is_rejected() -> None:
    with pytest.raises(AGIProtocolError, match="binary"):
        protocol.split_header_block(b"agi_network: y\x00es\n\n")


def test_latin1_caller_name_is_accepted() -> None:
    lines = protocol.split_header_block("agi_calleridname: José\n\n".encode("latin-1"))
    assert protocol.parse_header_line(lines[0]) == ("agi_calleridname", "José")


def test_oversized_header_line_is_rejected() -> None:
    block = b"agi_x: " + b"a" * protocol.MAX_HEADER_LINE + b"\n\n"
    with pytest.raises(AGIProtocolError, match="header line"):
        protocol.split_header_block(block)


# -- replies -----------------------------------------------------------------------------

def test_200_with_data_and_key_values() -> None:
    r = parse_reply("200 result=1 (dtmf) endpos=23456")
    assert (r.code, r.result, r.data, r.extra) == (200, "1", "dtmf", {"endpos": "23456"})
    assert r.endpos == 23456


def test_stream_file_key_code_and_missing_file_endpos() -> None:
    assert protocol.digit_of(parse_reply("200 result=53 endpos=800").result) == "5"
    missing = parse_reply("200 result=0 endpos=0")
    assert protocol.digit_of(missing.result) is None
    assert missing.endpos == 0


def test_get_data_timeout_keeps_digits_and_leading_zeros() -> None:
    r = parse_reply("200 result=0042 (timeout)")
    assert (r.result, r.timed_out) == ("0042", True)
    empty = parse_reply("200 result= (timeout)")
    assert (empty.result, empty.timed_out) == ("", True)
    full = parse_reply("200 result=1234")
    assert (full.result, full.timed_out, full.data) == ("1234", False, None)


def test_data_may_contain_parentheses_and_spaces() -> None:
    r = parse_reply("200 result=1 (Smith (home) x=1)")
    assert r.data == "Smith (home) x=1"
    assert r.extra == {}


def test_510_raises_command_error() -> None:
    r = parse_reply("510 Invalid or unknown command")
    with pytest.raises(AGICommandError) as info:
        r.raise_for_status()
    assert info.value.code == 510
    assert info.value.lines == ["510 Invalid or unknown command"]


def test_511_is_a_dead_channel_hangup() -> None:
    r = parse_reply("511 Command Not Permitted on a dead channel or intercept routine")
    with pytest.raises(AGIDeadChannel):
        r.raise_for_status()
    assert issubclass(AGIDeadChannel, AGIHangup)


USAGE_520 = [
    "520-Invalid command syntax.  Proper usage follows:",
    " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]",
    "  Stream the given file, and receive DTMF data.",
    "520 End of proper usage.",
]


def test_multiline_520_needs_more_until_the_end_line() -> None:
    for n in range(1, len(USAGE_520)):
        assert protocol.reply_needs_more(USAGE_520[:n])
    assert not protocol.reply_needs_more(USAGE_520)
    r = parse_reply(USAGE_520)
    with pytest.raises(AGICommandError) as info:
        r.raise_for_status()
    assert info.value.code == 520
    assert info.value.lines == USAGE_520


def test_single_line_520_is_complete() -> None:
    line = ["520 Invalid command syntax.  Proper usage not available."]
    assert not protocol.reply_needs_more(line)
    assert parse_reply(line).code == 520


def test_unterminated_520_is_a_protocol_error() -> None:
    with pytest.raises(AGIProtocolError):
        parse_reply(USAGE_520[:2])


@pytest.mark.parametrize("text", ["HANGUP", "garbage", "200 nothing", "", "99 x"])
def test_non_replies_are_protocol_errors(text: str) -> None:
    with pytest.raises(AGIProtocolError):
        parse_reply(text)


def test_binary_reply_is_rejected() -> None:
    with pytest.raises(AGIProtocolError):
        protocol.decode_line(b"200 result=\x01\n", "reply")


# -- commands ----------------------------------------------------------------------------

@pytest.mark.parametrize(("arg", "wire"), [
    ("welcome", "welcome"),
    ("", '""'),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    (42, "42"),
])
def test_quote(arg: object, wire: str) -> None:
    assert quote(arg) == wire


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b"])
def test_quote_rejects_line_breaks_and_nul(bad: str) -> None:
    with pytest.raises(ValueError):
        quote(bad)


@pytest.mark.parametrize("arg", ["", "plain", "two words", 'q"uote', "b\\s", ' lead', "é ü"])
def test_quoting_round_trips_through_asterisk_style_splitting(arg: str) -> None:
    line = build_command("SET VARIABLE", "X", arg).decode()
    assert split_command(line) == ["SET", "VARIABLE", "X", arg]


def test_build_command_bytes_and_limit() -> None:
    assert build_command("STREAM FILE", "welcome", "") == b'STREAM FILE welcome ""\n'
    longest = "x" * (protocol.MAX_COMMAND_BYTES - len("VERBOSE \n"))
    assert len(build_command("VERBOSE", longest)) == protocol.MAX_COMMAND_BYTES
    with pytest.raises(ValueError, match="limit"):
        build_command("VERBOSE", longest + "x")


@pytest.mark.parametrize("verb", ["stream file", "ANSWER\n", "", "GET DATA x"])
def test_build_command_rejects_odd_verbs(verb: str) -> None:
    with pytest.raises(ValueError):
        build_command(verb)


@pytest.mark.parametrize("verb", [None, 7, ["ANSWER"]])
def test_build_command_rejects_verbs_that_are_not_text(verb: object) -> None:
    with pytest.raises(ValueError):
        build_command(verb)


def test_checked_verbs_are_remembered_without_loosening_the_check() -> None:
    for _ in range(2):  # the second time the verb comes from the cache of checked verbs
        assert build_command("SAY DIGITS", "12") == b"SAY DIGITS 12\n"
    with pytest.raises(ValueError):
        build_command("SAY DIGITS\n")
    with pytest.raises(ValueError):
        build_command("say digits", "12")


# -- the per-command fast path -------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "200 result=1", "200 result=0 endpos=16000", "200 result= (timeout)",
    "200 result=1 (a (b) c) endpos=3", "200 result=49 Trying...", "100 Trying...",
    "510 Invalid or unknown command", "520 Invalid command syntax.  Proper usage not available.",
    "511 Command Not Permitted on a dead channel or intercept routine",
    "200 result=1\r", "200 result=0 (",
])
def test_single_line_parser_matches_parse_reply(line: str) -> None:
    assert protocol.parse_reply_line(line) == parse_reply([line])


@pytest.mark.parametrize("line", ["", "\r", "HANGUP", "200 nothing", "520-Invalid", "99 x"])
def test_single_line_parser_rejects_what_parse_reply_rejects(line: str) -> None:
    with pytest.raises(AGIProtocolError):
        protocol.parse_reply_line(line)
    with pytest.raises(AGIProtocolError):
        parse_reply([line])


def test_reply_is_still_immutable() -> None:
    reply = parse_reply("200 result=1")
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError
        reply.result = "2"  # type: ignore[misc]


# -- the fast path for common replies ------------------------------------------------------

@pytest.mark.parametrize("line", [
    b"200 result=0\n", b"200 result=1\n", b"200 result=-1\n", b"200 result=49 endpos=12345\n",
    b"200 result=0 endpos=0\n", b"200 result=0\r\n"])
def test_common_replies_take_the_fast_path(line: bytes) -> None:
    fast = protocol.parse_common_reply(line)
    assert fast is not None
    assert fast == protocol.parse_reply_line(protocol.decode_line(line))


@pytest.mark.parametrize("line", [
    b"200 result= (timeout)\n", b"200 result=1234 (timeout)\n", b"200 result=1 (x) endpos=3\n",
    b"200 result=0 endpos=12 extra=1\n", b"HANGUP\n", b"510 Invalid or unknown command\n",
    b"100 result=0 Trying...\n", b"200 result=0  endpos=1\n", b"200 result=0x\n"])
def test_other_replies_are_left_to_the_full_parser(line: bytes) -> None:
    assert protocol.parse_common_reply(line) is None


@given(st.binary(max_size=40) | st.from_regex(rb"\A200 result=-?[0-9]{0,4}( endpos=[0-9]{0,6})?"
                                               rb"[ \r]?\n?\Z"))
def test_fast_path_agrees_with_the_full_parser(raw: bytes) -> None:
    fast = protocol.parse_common_reply(raw)
    if fast is None:
        return
    assert fast == protocol.parse_reply_line(protocol.decode_line(raw))
