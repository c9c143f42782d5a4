"""Exceptions of the FastAGI layer.

Flows usually catch :class:`AGIHangup` alone (the caller left: stop quietly) and let the
rest reach the server, which logs them with the call's uniqueid and closes the connection.
"""

from __future__ import annotations


class AGIError(Exception):
    """Base of every FastAGI error."""


class AGIHangup(AGIError):
    """The caller hung up: an out-of-band HANGUP line, the connection closed, or a command
    whose ``result=-1`` means the channel went away."""


class AGIDeadChannel(AGIHangup):
    """Asterisk answered 511: the command is not permitted on a dead channel."""


class AGICommandError(AGIError):
    """Asterisk refused the command: 510 (unknown command) or 520 (usage error).

    ``code`` is the numeric status, ``lines`` the reply lines as received (a multi-line 520
    carries the usage text).
    """

    def __init__(self, code: int, lines: list[str], message: str | None = None) -> None:
        self.code = code
        self.lines = list(lines)
        super().__init__(message or f"{code}: {lines[0] if lines else ''}")


class AGIProtocolError(AGIError):
    """The peer broke the protocol: malformed, oversized or binary header or reply, or it
    did not send the header block or a reply in time."""
