"""FastAGI wire format as pure functions: no sockets, no asyncio, easy to test byte by byte.

Asterisk opens the connection and sends ``agi_key: value`` lines ending with a blank line;
then the server sends one command per line and Asterisk answers each with a reply:

    200 result=49 (dtmf) endpos=12345
    200 result= (timeout)
    510 Invalid or unknown command
    511 Command Not Permitted on a dead channel or intercept routine
    520-Invalid command syntax.  Proper usage follows:
    ...usage text...
    520 End of proper usage.

A bare ``HANGUP`` line may arrive at any time (out of band); it is not a reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ivr.agi.errors import AGICommandError, AGIDeadChannel, AGIProtocolError

MAX_COMMAND_BYTES = 8192  # Asterisk's AGI read buffer; longer commands are cut off there
MAX_HEADER_LINE = 8192
MAX_HEADER_BYTES = 64 * 1024
MAX_REPLY_LINES = 512  # a 520 usage text is a few dozen lines; more means a runaway peer
HANGUP_LINE = "HANGUP"
USAGE_END = "520 End of proper usage."

_HEADER_KEY = re.compile(r"agi_[a-z0-9_]+\Z")
_ARG_KEY = re.compile(r"agi_arg_([0-9]+)\Z")
# Any C0 control character except tab, and DEL: Asterisk never sends them, junk does.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS = re.compile(r"([0-9]{3})([ -])(.*)\Z", re.S)
_RESULT = re.compile(r"result=(\S*)(?: +(.*))?\Z", re.S)
_KEY_VALUES = re.compile(r"(?:\s+[A-Za-z_][A-Za-z0-9_]*=\S*)*\s*\Z")
_KEY_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_VERB = re.compile(r"[A-Z][A-Z ]*[A-Z]\Z|[A-Z]\Z")
_NEEDS_QUOTES = re.compile(r'[\s"\\\']')
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_GOOD_VERBS: set[str] = set()  # verbs already checked against _VERB


def decode_line(raw: bytes, what: str = "line") -> str:
    """Bytes of one line (newline included or not) to text, or AGIProtocolError.

    Asterisk sends UTF-8, but a caller name from an old trunk can be Latin-1: accept that
    rather than drop a real call. Control bytes (NUL and friends) are never legitimate.
    """
    raw = raw.rstrip(b"\n")
    if raw.endswith(b"\r"):  # tolerate CRLF peers; Asterisk itself sends bare LF
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if _CONTROL.search(text):
        raise AGIProtocolError(f"binary data in {what}")
    return text


def parse_header_line(line: str) -> tuple[str, str]:
    """``agi_key: value`` -> (key, value). The value may be empty (``agi_accountcode: ``)."""
    key, sep, value = line.partition(":")
    if not sep or not _HEADER_KEY.match(key):
        raise AGIProtocolError(f"malformed header line ({len(line)} chars)")
    return key, value.strip(" ")


def parse_headers(lines: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Header lines (without the blank one) -> (headers, script arguments).

    ``agi_arg_1``..``agi_arg_N`` become the argument list in order; a gap ends it, as in
    Asterisk, which numbers them consecutively.
    """
    headers: dict[str, str] = {}
    for line in lines:
        key, value = parse_header_line(line)
        headers[key] = value
    return headers, header_args(headers)


def header_args(headers: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in headers:
        args.append(headers[f"agi_arg_{len(args) + 1}"])
    return args


def split_header_block(block: bytes) -> list[str]:
    """The raw header block (ending with the blank line) -> decoded, size-checked lines."""
    if len(block) > MAX_HEADER_BYTES:
        raise AGIProtocolError(f"header block over {MAX_HEADER_BYTES} bytes")
    lines = []
    for raw in block.split(b"\n"):
        if not raw.strip(b"\r"):
            continue
        if len(raw) > MAX_HEADER_LINE:
            raise AGIProtocolError(f"header line over {MAX_HEADER_LINE} bytes")
        lines.append(decode_line(raw, "header"))
    if not lines:
        raise AGIProtocolError("empty header block")
    return lines


@dataclass(frozen=True, slots=True)  # slots: one per command, no __dict__ to allocate
class Reply:
    """One parsed reply. ``result`` stays a string: GET DATA returns digits (``result=0042``
    must keep its zeros) and may be empty (``result= (timeout)``)."""

    code: int
    result: str = ""
    data: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    raw: str = ""
    lines: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"

    @property
    def result_int(self) -> int:
        """The result as a number (raises AGIProtocolError when it is not one)."""
        try:
            return int(self.result)
        except ValueError:
            raise AGIProtocolError(f"result {self.result!r} is not a number") from None

    @property
    def endpos(self) -> int | None:
        """Sample position where playback stopped; 0 after STREAM FILE means the file was
        missing (Asterisk only warns in its own log)."""
        value = self.extra.get("endpos")
        return int(value) if value is not None and value.isdigit() else None

    def raise_for_status(self) -> Reply:
        """Return self for 200 (and 100), raise the matching AGIError otherwise."""
        if self.code in (100, 200):
            return self
        if self.code == 511:
            raise AGIDeadChannel(self.raw)
        raise AGICommandError(self.code, list(self.lines or (self.raw,)))


def reply_needs_more(lines: Sequence[str]) -> bool:
    """True while a multi-line ``520-`` reply has not reached ``520 End of proper usage.``."""
    if not lines or not lines[0].startswith("520-"):
        return False
    if len(lines) > MAX_REPLY_LINES:
        raise AGIProtocolError(f"520 usage reply over {MAX_REPLY_LINES} lines")
    return len(lines) == 1 or not lines[-1].startswith("520 ")


def parse_reply(lines: str | Sequence[str]) -> Reply:
    """Parse a complete reply: one line, or the lines of a multi-line 520.

    Raises AGIProtocolError when the text is not a reply at all (``HANGUP`` must be filtered
    out before: it is not a reply).
    """
    if isinstance(lines, str):
        lines = lines.split("\n")
    lines = tuple(line.rstrip("\r") for line in lines if line != "")
    if not lines:
        raise AGIProtocolError("empty reply")
    return _parse(lines[0], lines, "\n".join(lines))


def parse_reply_line(line: str) -> Reply:
    """:func:`parse_reply` of a single line (every reply but a multi-line 520), without the
    list handling: this runs once per command."""
    line = line.rstrip("\r")
    if not line:
        raise AGIProtocolError("empty reply")
    return _parse(line, (line,), line)


# Most replies of a call: ANSWER, STREAM FILE, WAIT FOR DIGIT, SAY NUMBER, SET VARIABLE.
_COMMON = re.compile(rb"200 result=(-?[0-9]+)(?: endpos=([0-9]+))?\r?\n?\Z")


def parse_common_reply(raw: bytes) -> Reply | None:
    """The usual ``200 result=N`` / ``200 result=N endpos=M`` line, straight from its bytes;
    None for anything else (then :func:`decode_line` and :func:`parse_reply_line`). Same
    Reply as theirs, at a fraction of the cost: this runs for nearly every command."""
    m = _COMMON.match(raw)
    if m is None:
        return None
    result, endpos = m.groups()
    text = raw.rstrip(b"\r\n").decode("ascii")
    return Reply(200, result.decode("ascii"),
                 None, {"endpos": endpos.decode("ascii")} if endpos is not None else {},
                 text, (text,))


def _parse(first: str, lines: tuple[str, ...], raw: str) -> Reply:
    m = _STATUS.match(first)
    if not m:
        raise AGIProtocolError(f"malformed reply: {first[:80]!r}")
    code, dash, rest = int(m.group(1)), m.group(2), m.group(3)
    if dash == "-" and code != 520:
        raise AGIProtocolError(f"unexpected continuation line for {code}")
    if code == 520 and dash == "-" and (len(lines) < 2 or not lines[-1].startswith("520 ")):
        raise AGIProtocolError("unterminated 520 usage reply")
    if code != 200 and code != 100:
        return Reply(code, "", rest or None, {}, raw, lines)
    if len(lines) > 1:
        raise AGIProtocolError(f"{code} reply with continuation lines")
    r = _RESULT.match(rest)
    if not r:
        if code == 100:  # "100 Trying..." without a result
            return Reply(code, "", rest, {}, raw, lines)
        raise AGIProtocolError(f"200 reply without result=: {first[:80]!r}")
    result, tail = r.group(1), r.group(2)
    if not tail:  # the common "200 result=1": nothing more to split
        return Reply(code, result, None, {}, raw, lines)
    data, extra = _split_data(tail)
    return Reply(code, result, data, extra, raw, lines)


def _split_data(tail: str) -> tuple[str | None, dict[str, str]]:
    """``(data) key=value ...`` -> (data, {key: value}).

    The data is whatever Asterisk put between the parentheses, which may itself contain
    parentheses or spaces (GET VARIABLE returns any value): take the last ``)`` that is
    followed only by ``key=value`` pairs.
    """
    data: str | None = None
    rest = tail
    if tail.startswith("("):
        end = len(tail)
        while True:
            end = tail.rfind(")", 1, end)
            if end < 0:
                # "(" with no ")": keep it all as data rather than lose it.
                data, rest = tail[1:], ""
                break
            if _KEY_VALUES.match(tail, end + 1):
                data, rest = tail[1:end], tail[end + 1:]
                break
    elif tail and not _KEY_VALUES.match(" " + tail):
        # Text after the result that is neither (data) nor key=value: e.g. "Trying...".
        return tail, {}
    return data, dict(_KEY_VALUE.findall(rest))


def quote(arg: object) -> str:
    """One command argument, quoted the way Asterisk's parse_args() reads it.

    Quoted when empty or when it holds whitespace, quotes or backslashes, with ``"`` and
    ``\\`` backslash-escaped. CR, LF and NUL cannot be sent at all (they would end or cut
    the command line), so they raise ValueError instead of being smuggled through.
    """
    text = arg if type(arg) is str else str(arg)
    if _FORBIDDEN.search(text):
        raise ValueError("AGI argument contains CR, LF or NUL")
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_command(*parts: object) -> bytes:
    """``build_command("STREAM FILE", "welcome", "12")`` -> ``b'STREAM FILE welcome 12\\n'``.

    The first part is the command verb (upper-case words, sent as is); the rest are
    arguments, quoted as needed. Raises ValueError past Asterisk's 8192-byte line limit.
    """
    verb = parts[0] if parts else None
    if not isinstance(verb, str) or (verb not in _GOOD_VERBS and not _VERB.match(verb)):
        raise ValueError(f"AGI command verb must be upper-case words, got {parts[:1]!r}")
    if len(_GOOD_VERBS) < 256:  # a flow uses a few dozen verbs; stay bounded regardless
        _GOOD_VERBS.add(verb)
    line = " ".join([verb, *map(quote, parts[1:])]) + "\n"
    data = line.encode("utf-8")
    if len(data) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command is {len(data)} bytes; the limit is {MAX_COMMAND_BYTES}")
    return data


def split_command(line: str) -> list[str]:
    """Split a command line into words the way Asterisk's parse_args() does (quotes group,
    backslash escapes the next character). The inverse of :func:`build_command`; used by
    the fake Asterisk and the tests."""
    words: list[str] = []
    cur: list[str] = []
    in_word = quoted = escaped = False
    for c in line.rstrip("\n"):
        if escaped:
            cur.append(c)
            escaped = False
            in_word = True
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
            in_word = True
        elif c in " \t" and not quoted:
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        else:
            cur.append(c)
            in_word = True
    if in_word:
        words.append("".join(cur))
    return words


def digit_of(result: str) -> str | None:
    """A result holding the ASCII code of a pressed key (``53``) -> ``"5"``; 0 -> None."""
    try:
        code = int(result)
    except ValueError:
        raise AGIProtocolError(f"result {result!r} is not a key code") from None
    if code <= 0:
        return None
    if code > 127:
        raise AGIProtocolError(f"result {code} is not a key code")
    return chr(code)
