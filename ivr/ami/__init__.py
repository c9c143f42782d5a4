"""Asterisk Manager Interface client (knows calls, queues and channels; nothing of money)."""

from ivr.ami.client import AMIClient
from ivr.ami.errors import AMIActionError, AMIConnectionError, AMIError, AMILoginError
from ivr.ami.events import OriginateResult, QueueSummary

__all__ = [
    "AMIActionError",
    "AMIClient",
    "AMIConnectionError",
    "AMIError",
    "AMILoginError",
    "OriginateResult",
    "QueueSummary",
]
