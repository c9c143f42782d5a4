"""A real SIP phone with no human: sipp dials as the demo softphone and types keys as RFC 4733
telephone-events (RTP payload type 101).

The keys are fixed before the call: each entry is typed at a time from the start of the
call's media (just after the 200 OK is acknowledged). This module writes those events into a
pcap that sipp replays (``play_pcap_audio``), and the sipp scenario that places the call.

Why our own pcap: sipp's stock one-digit pcaps all carry the same RTP timestamps, and
Asterisk takes an event with the timestamp of the previous one for a retransmission of it
and drops it ("1001" arrives as "10"). Here every press has its own timestamp (the RTP
clock at the moment it starts) and the sequence numbers run across the whole file.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.asterisk.local import LocalAsterisk

SIPP = "sipp"
EVENT_PT = 101
PCMU_PT = 0
RATE = 8000  # samples per second: PCMU and telephone-event/8000
PACKET_MS = 20
TONE_MS = 60  # a key held 60 ms ...
GAP_MS = 80  # ... and 80 ms of silence before the next one
LEAD_IN_MS = 200  # silence first: Asterisk's strict RTP learns our address from it
END_COPIES = 3  # RFC 4733 sends the end of an event three times
SSRC = 0x5354_5059
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13,
               "C": 14, "D": 15}


class SippMissing(RuntimeError):
    """sipp (Debian's sip-tester) is not installed."""


@dataclass(frozen=True)
class Entry:
    """Keys typed one after another, the first ``at`` seconds after the media starts."""

    at: float
    keys: str


def key_times(entries: Sequence[Entry], *, tone_ms: int = TONE_MS,
              gap_ms: int = GAP_MS) -> list[tuple[int, str]]:
    """(start in ms, key) of every press; keys of an entry ``gap_ms`` of silence apart."""
    out: list[tuple[int, str]] = []
    last_end = -1
    for entry in entries:
        t = round(entry.at * 1000)
        if t <= last_end:
            raise ValueError(f"entry {entry.keys!r} at {entry.at}s overlaps the one before")
        for key in entry.keys:
            if key.upper() not in EVENT_CODES:
                raise ValueError(f"not a keypad key: {key!r}")
            out.append((t, key.upper()))
            last_end = t + tone_ms
            t += tone_ms + gap_ms
    return out


# ---- the pcap -------------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(payload: bytes, src_port: int = 6000, dst_port: int = 6002) -> bytes:
    """Ethernet + IPv4 + UDP around one RTP packet (sipp rewrites addresses and ports)."""
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\0" * 6 + b"\0\0\0\0\0\1" + b"\x08\x00" + ip + udp


def _rtp(seq: int, ts: int, pt: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                       ts & 0xFFFFFFFF, SSRC) + payload


def dtmf_packets(presses: Sequence[tuple[int, str]], *, tone_ms: int = TONE_MS,
                 lead_in_ms: int = LEAD_IN_MS) -> list[tuple[int, bytes]]:
    """(send time in ms, RTP packet): silence, then per press events with E=0 every 20 ms
    and three with E=1, all with the press's own timestamp, the first with the marker."""
    packets: list[tuple[int, bytes]] = []
    seq = 1
    for t in range(0, lead_in_ms, PACKET_MS):
        packets.append((t, _rtp(seq, t * RATE // 1000, PCMU_PT, b"\xff" * 160)))
        seq += 1
    for start, key in presses:
        at = start + lead_in_ms
        ts = at * RATE // 1000
        code = EVENT_CODES[key]
        steps = max(1, tone_ms // PACKET_MS)
        for i in range(steps):
            duration = (i + 1) * PACKET_MS * RATE // 1000
            event = struct.pack("!BBH", code, 10, duration)  # E=0, volume -10 dBm0
            packets.append((at + i * PACKET_MS, _rtp(seq, ts, EVENT_PT, event, i == 0)))
            seq += 1
        total = steps * PACKET_MS * RATE // 1000
        for _ in range(END_COPIES):
            event = struct.pack("!BBH", code, 0x80 | 10, total)
            packets.append((at + steps * PACKET_MS, _rtp(seq, ts, EVENT_PT, event)))
            seq += 1
    return packets


def write_pcap(path: Path, packets: Sequence[tuple[int, bytes]]) -> Path:
    """A libpcap file (Ethernet link type) of the packets at their times."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ms, rtp in packets:
        frame = _frame(rtp)
        out.append(struct.pack("<IIII", ms // 1000, (ms % 1000) * 1000, len(frame),
                               len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


# ---- the sipp scenario ----------------------------------------------------------------------

_HEAD = """\
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Demo Softphone" <sip:{user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
Call-ID: [call_id]
Max-Forwards: 70"""

_SDP = """\
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv"""


def scenario_xml(pcap: Path, *, user: str, hold_s: float,
                 headers: dict[str, str] | None = None) -> str:
    """INVITE (answering the digest challenge) offering PCMU and telephone-event, ACK, the
    pcap, then wait up to ``hold_s`` for Asterisk's BYE; if none comes, the phone hangs up.
    ``headers`` go on both INVITEs (the QA endpoint reads X-QA-* ones)."""
    def head(to_tag: str = "") -> str:
        return _HEAD.format(user=user, to_tag=to_tag)

    for name, value in (headers or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9-]+", name) or not re.fullmatch(r"[ -~]*", value):
            raise ValueError(f"not a SIP header: {name}: {value!r}")
    contact = f"Contact: <sip:{user}@[local_ip]:[local_port]>" + "".join(
        f"\n{name}: {value}" for name, value in (headers or {}).items())
    invite = "INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0"
    ack = "ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0"
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="StarPay SIP phone">
  <send retrans="500"><![CDATA[
{invite}
{head()}
CSeq: 1 INVITE
{contact}
{_SDP}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
{ack}
[last_Via:]
{head("[peer_tag_param]")}
CSeq: 1 ACK
Content-Length: 0
]]></send>
  <send retrans="500"><![CDATA[
{invite}
{head()}
CSeq: 2 INVITE
{contact}
[authentication]
{_SDP}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
{ack}
{head("[peer_tag_param]")}
CSeq: 2 ACK
{contact}
Content-Length: 0
]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <recv request="BYE" timeout="{round(hold_s * 1000)}" ontimeout="phone_hangs_up"/>
  <send next="done"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
  <label id="phone_hangs_up"/>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{head("[peer_tag_param]")}
CSeq: 3 BYE
Content-Length: 0
]]></send>
  <recv response="200"/>
  <label id="done"/>
</scenario>
"""


# ---- the call -------------------------------------------------------------------------------

@dataclass
class SipCall:
    """How the phone's call went: sipp's exit status (0: the call completed) and whether
    Asterisk hung up (the service ended the call) or the phone did after waiting."""

    returncode: int
    asterisk_hung_up: bool
    output: str

    @property
    def completed(self) -> bool:
        return self.returncode == 0


def find_sipp() -> str:
    path = shutil.which(SIPP)
    if path is None:
        raise SippMissing("sipp is not installed: install Debian's sip-tester "
                          "(scripts/system-deps.sh does)")
    return path


def call(asterisk: LocalAsterisk, entries: Sequence[Entry], folder: Path, *,
         exten: str = "*PAY", hold_s: float = 120.0, user: str = "softphone",
         headers: dict[str, str] | None = None) -> SipCall:
    """Dial ``exten`` on the instance as the demo softphone (or ``user``) and type
    ``entries``; blocks until the call ends (run it in a thread from async code)."""
    from ivr.asterisk.local import free_port

    sipp = find_sipp()
    folder.mkdir(parents=True, exist_ok=True)
    pcap = write_pcap(folder / "keys.pcap", dtmf_packets(key_times(entries)))
    xml = folder / "phone.xml"
    xml.write_text(scenario_xml(pcap.resolve(), user=user, hold_s=hold_s,
                                headers=headers))
    messages = folder / "messages.log"
    cmd = [sipp, f"127.0.0.1:{asterisk.ports.sip}", "-sf", str(xml), "-s", exten,
           "-au", user, "-ap", asterisk.sip_secret, "-i", "127.0.0.1", "-mi", "127.0.0.1",
           "-p", str(free_port(socket.SOCK_DGRAM)), "-mp", str(free_port(socket.SOCK_DGRAM)),
           "-m", "1", "-l", "1", "-nostdin", "-timeout", f"{round(hold_s + 60)}s",
           "-trace_msg", "-message_file", str(messages)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=hold_s + 90, check=False, cwd=folder)
    log = messages.read_text(errors="replace") if messages.exists() else ""
    return SipCall(proc.returncode, _received_bye(log), proc.stdout + proc.stderr + log)


def _received_bye(log: str) -> bool:
    # sipp's message log: a "UDP message received [n] bytes :" line, a blank line, the message.
    return re.search(r"message received[^\n]*\n\s*\nBYE sip:", log) is not None
