"""FastAGI wire protocol: a server, one session per call, reply parsing and errors.

This package knows nothing about payments or call flows: a flow is an async handler that
receives an :class:`AGISession` and drives the call through it.
"""

from ivr.agi.errors import (
    AGICommandError,
    AGIDeadChannel,
    AGIError,
    AGIHangup,
    AGIProtocolError,
)
from ivr.agi.protocol import Reply, build_command, parse_reply, quote
from ivr.agi.server import AGIServer, Handler
from ivr.agi.session import AGISession

__all__ = [
    "AGICommandError", "AGIDeadChannel", "AGIError", "AGIHangup", "AGIProtocolError",
    "AGIServer", "AGISession", "Handler", "Reply", "build_command", "parse_reply", "quote",
]
