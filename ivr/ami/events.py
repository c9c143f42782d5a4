"""Small typed views of the AMI events and replies the product uses.

Events reach callbacks as plain dicts (header name -> value, a list for repeated headers);
these views pick the fields we rely on, case-insensitively, so a header spelled ``Uniqueid``
in one Asterisk version and ``UniqueID`` in another reads the same. Fields that can carry
the digits a caller pressed are kept out of ``repr`` so they can't leak into logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Originate's Reason codes (Asterisk's AST_CONTROL_* values as reported by OriginateResponse).
ORIGINATE_REASONS: dict[int, str] = {
    0: "failed (no such channel, or no answer)",
    1: "hung up",
    2: "ringing (local)",
    3: "ringing, not answered (timed out)",
    4: "answered",
    5: "busy",
    8: "congestion",
}


def originate_reason_text(reason: int) -> str:
    return ORIGINATE_REASONS.get(reason, f"unknown reason {reason}")


def header(event: Mapping[str, Any], name: str, default: str = "") -> str:
    """A header's value, matched case-insensitively; the last one if it was repeated."""
    value: Any = event.get(name)
    if value is None:
        low = name.lower()
        value = next((v for k, v in event.items() if k.lower() == low), None)
    if value is None:
        return default
    if isinstance(value, list):
        return str(value[-1]) if value else default
    return str(value)


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _float(value: str, default: float = 0.0) -> float:
    try:
        return float(value)
    except ValueError:
        return default


def _optional(value: str) -> str | None:
    # Asterisk writes "<null>" or "<unknown>" for fields it has no value for.
    return None if value in ("", "<null>", "<unknown>") else value


@dataclass(frozen=True)
class OriginateResult:
    response: str  # "Success" or "Failure"
    reason: int
    channel: str
    uniqueid: str | None
    action_id: str = ""

    @property
    def success(self) -> bool:
        return self.response == "Success"

    @property
    def reason_text(self) -> str:
        return originate_reason_text(self.reason)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> OriginateResult:
        return cls(response=header(event, "Response"), reason=_int(header(event, "Reason")),
                   channel=header(event, "Channel"),
                   uniqueid=_optional(header(event, "Uniqueid")),
                   action_id=header(event, "ActionID"))


@dataclass(frozen=True)
class QueueSummary:
    queue: str
    logged_in: int
    available: int
    callers: int
    hold_time: float  # seconds, Asterisk's running average
    talk_time: float  # seconds, Asterisk's running average
    longest_hold_time: float  # seconds the longest-waiting caller has waited

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> QueueSummary:
        return cls(queue=header(event, "Queue"), logged_in=_int(header(event, "LoggedIn")),
                   available=_int(header(event, "Available")),
                   callers=_int(header(event, "Callers")),
                   hold_time=_float(header(event, "HoldTime")),
                   talk_time=_float(header(event, "TalkTime")),
                   longest_hold_time=_float(header(event, "LongestHoldTime")))


@dataclass(frozen=True)
class Newchannel:
    channel: str
    uniqueid: str
    linkedid: str
    caller_id_num: str
    context: str
    exten: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Newchannel:
        return cls(channel=header(event, "Channel"), uniqueid=header(event, "Uniqueid"),
                   linkedid=header(event, "Linkedid"),
                   caller_id_num=header(event, "CallerIDNum"),
                   context=header(event, "Context"), exten=header(event, "Exten"))


@dataclass(frozen=True)
class Hangup:
    channel: str
    uniqueid: str
    cause: int  # Q.850 cause code
    cause_txt: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Hangup:
        return cls(channel=header(event, "Channel"), uniqueid=header(event, "Uniqueid"),
                   cause=_int(header(event, "Cause")), cause_txt=header(event, "Cause-txt"))


@dataclass(frozen=True)
class AGIExecStart:
    channel: str
    uniqueid: str
    command_id: str
    # The command can hold digits (SAY DIGITS ...): not shown by repr.
    command: str = field(repr=False)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> AGIExecStart:
        return cls(channel=header(event, "Channel"), uniqueid=header(event, "Uniqueid"),
                   command_id=header(event, "CommandId"), command=header(event, "Command"))


@dataclass(frozen=True)
class AGIExecEnd:
    channel: str
    uniqueid: str
    command_id: str
    result_code: int  # 200, 510, 511, 520
    command: str = field(repr=False)
    result: str = field(repr=False)  # "Success", "Failure", ... or the raw "result=..." text

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> AGIExecEnd:
        return cls(channel=header(event, "Channel"), uniqueid=header(event, "Uniqueid"),
                   command_id=header(event, "CommandId"),
                   result_code=_int(header(event, "ResultCode")),
                   command=header(event, "Command"), result=header(event, "Result"))


@dataclass(frozen=True)
class DTMFEnd:
    channel: str
    uniqueid: str
    direction: str  # "Received" (from the caller) or "Sent"
    duration_ms: int
    digit: str = field(repr=False)  # a key the caller pressed: never log it

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> DTMFEnd:
        return cls(channel=header(event, "Channel"), uniqueid=header(event, "Uniqueid"),
                   direction=header(event, "Direction"),
                   duration_ms=_int(header(event, "DurationMs")), digit=header(event, "Digit"))


@dataclass(frozen=True)
class QueueCallerJoin:
    queue: str
    position: int
    count: int
    channel: str
    uniqueid: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> QueueCallerJoin:
        return cls(queue=header(event, "Queue"), position=_int(header(event, "Position")),
                   count=_int(header(event, "Count")), channel=header(event, "Channel"),
                   uniqueid=header(event, "Uniqueid"))


@dataclass(frozen=True)
class AgentComplete:
    queue: str
    member_name: str
    interface: str
    hold_time: int  # seconds
    talk_time: int  # seconds
    reason: str  # "caller", "agent" or "transfer"

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> AgentComplete:
        return cls(queue=header(event, "Queue"), member_name=header(event, "MemberName"),
                   interface=header(event, "Interface"),
                   hold_time=_int(header(event, "HoldTime")),
                   talk_time=_int(header(event, "TalkTime")), reason=header(event, "Reason"))


TypedEvent = (Newchannel | Hangup | AGIExecStart | AGIExecEnd | DTMFEnd | QueueCallerJoin
              | AgentComplete | OriginateResult)

_VIEWS: dict[str, Any] = {
    "newchannel": Newchannel, "hangup": Hangup, "agiexecstart": AGIExecStart,
    "agiexecend": AGIExecEnd, "dtmfend": DTMFEnd, "queuecallerjoin": QueueCallerJoin,
    "agentcomplete": AgentComplete, "originateresponse": OriginateResult,
}


def parse(event: Mapping[str, Any]) -> TypedEvent | None:
    """The typed view of an event, or None for events we have no view of."""
    view = _VIEWS.get(header(event, "Event").lower())
    return view.from_event(event) if view else None
