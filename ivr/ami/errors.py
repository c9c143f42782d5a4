"""Errors raised by the AMI client. All derive from AMIError."""

from __future__ import annotations


class AMIError(Exception):
    """Anything that went wrong talking to Asterisk's manager interface."""


class AMIConnectionError(AMIError):
    """Asterisk's AMI is unreachable, or the connection dropped while we waited on it."""


class AMILoginError(AMIError):
    """Asterisk refused our username/secret; the message says what to check."""


class AMIActionError(AMIError):
    """Asterisk answered an action with ``Response: Error``; ``message`` is its reason."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"AMI action {action} failed: {message or '(no message)'}")
        self.action = action
        self.message = message


class AMITimeoutError(AMIError, TimeoutError):
    """Asterisk did not answer in time (also a TimeoutError, so either except works)."""
