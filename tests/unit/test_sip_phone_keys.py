"""The SIP phone's keys: the pcap of RFC 4733 events it replays, and the times planned for
each entry from a dry run's sounds."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ivr.qa.fake_asterisk import Command
from ivr.qa.key_timeline import Step, plan, sounds_of
from ivr.qa.sip_phone import (
    EVENT_PT,
    GAP_MS,
    TONE_MS,
    Entry,
    dtmf_packets,
    key_times,
    scenario_xml,
    write_pcap,
)


def read_pcap(path: Path) -> list[tuple[int, bytes]]:
    """(time in ms, RTP bytes) of every packet, checking the headers on the way."""
    data = path.read_bytes()
    magic, major, minor, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, 1)
    out, pos = [], 24
    while pos < len(data):
        sec, usec, caplen, length = struct.unpack("<IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + caplen]
        assert caplen == length == len(frame)
        assert frame[12:14] == b"\x08\x00"  # IPv4
        ip = frame[14:34]
        assert ip[9] == 17 and struct.unpack("!H", ip[2:4])[0] == len(frame) - 14
        udp_len = struct.unpack("!H", frame[38:40])[0]
        assert udp_len == len(frame) - 34
        out.append((sec * 1000 + usec // 1000, frame[42:]))
        pos += 16 + caplen
    return out


def events(packets: list[tuple[int, bytes]]) -> list[dict]:
    rows = []
    for ms, rtp in packets:
        b1, seq, ts = rtp[1], *struct.unpack("!HI", rtp[2:8])
        row = {"ms": ms, "seq": seq, "ts": ts, "marker": bool(b1 & 0x80), "pt": b1 & 0x7F}
        if row["pt"] == EVENT_PT:
            code, flags, duration = struct.unpack("!BBH", rtp[12:16])
            row.update(code=code, end=bool(flags & 0x80), duration=duration)
        rows.append(row)
    return rows


def test_every_press_is_its_own_event_with_a_fresh_timestamp(tmp_path: Path) -> None:
    presses = key_times([Entry(1.0, "1001#")])
    rows = events(read_pcap(write_pcap(tmp_path / "k.pcap", dtmf_packets(presses))))

    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(rows)))  # one run across the file
    dtmf = [r for r in rows if r["pt"] == EVENT_PT]
    by_ts: dict[int, list[dict]] = {}
    for r in dtmf:
        by_ts.setdefault(r["ts"], []).append(r)
    assert [group[0]["code"] for group in by_ts.values()] == [1, 0, 0, 1, 11]
    for group in by_ts.values():
        assert [r["end"] for r in group] == [False] * (TONE_MS // 20) + [True] * 3
        assert [r["marker"] for r in group] == [True] + [False] * (len(group) - 1)
        assert len({r["code"] for r in group}) == 1
        assert group[-1]["duration"] == TONE_MS * 8
    starts = [group[0]["ms"] for group in by_ts.values()]
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [TONE_MS + GAP_MS] * 4
    # The RTP clock runs with the send time: 8 samples per ms.
    assert all(r["ts"] - rows[0]["ts"] == (by_ts[r["ts"]][0]["ms"] - rows[0]["ms"]) * 8
               for r in dtmf)


def test_entries_that_overlap_or_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        key_times([Entry(1.0, "123456"), Entry(1.2, "1")])
    with pytest.raises(ValueError, match="keypad"):
        key_times([Entry(1.0, "12x")])


def test_the_scenario_offers_telephone_events_and_plays_the_pcap(tmp_path: Path) -> None:
    xml = scenario_xml(tmp_path / "k.pcap", user="softphone", hold_s=30)
    assert "a=rtpmap:101 telephone-event/8000" in xml and "RTP/AVP 0 101" in xml
    assert f'play_pcap_audio="{tmp_path / "k.pcap"}"' in xml
    assert 'timeout="30000"' in xml and "[authentication]" in xml


def cmd(line: str) -> Command:
    return Command.parse(line)


LENGTHS = {"starpay/greeting": 2.0, "starpay/ask_account": 4.0, "starpay/balance_is": 1.0,
           "starpay/num_5": 0.5, "starpay/main_menu": 10.0, "starpay/verify_zip": 1.2}


def length(name: str, lang: str) -> float:
    return LENGTHS[name] * (2 if lang == "es" else 1)


def test_each_entry_lands_late_in_its_prompt_and_the_clock_restarts_after_it() -> None:
    transcript = [cmd("ANSWER"), cmd("STREAM FILE starpay/greeting 9"),
                  cmd("STREAM FILE starpay/ask_account 0123456789#"), cmd("WAIT FOR DIGIT 500"),
                  cmd("EXEC Read STARPAY_KEYS,starpay/verify_zip,5,,1,5"),
                  cmd("SET VARIABLE CHANNEL(language) es"),
                  cmd("EXEC Read STARPAY_KEYS,starpay/balance_is&starpay/num_5&"
                      "starpay/main_menu,1,,1,5")]
    steps = [Step("ask_account", "12#"), Step("verify_zip", "10001"), Step("main_menu", "1")]
    entries = plan(transcript, [(2, 0), (4, 0), (6, 2)], steps, length=length)

    typing_12 = (3 * TONE_MS + 2 * GAP_MS) / 1000
    typing_zip = (5 * TONE_MS + 4 * GAP_MS) / 1000
    assert entries[0] == Entry(2.0 + 3.0, "12#")  # 1 s before the end of a 4 s prompt
    after = 5.0 + typing_12
    assert entries[1] == Entry(round(after + 0.6, 3), "10001")  # half way through 1.2 s
    after = entries[1].at + typing_zip
    # Spanish from then on: balance_is and num_5 before main_menu, each twice as long.
    assert entries[2] == Entry(round(after + 3.0 + 19.0, 3), "1")


def test_sounds_of_the_commands_that_play() -> None:
    assert sounds_of(cmd("STREAM FILE starpay/x 12")) == ["starpay/x"]
    assert sounds_of(cmd("GET DATA starpay/x 5000 4")) == ["starpay/x"]
    assert sounds_of(cmd("EXEC Read V,starpay/a&starpay/b,5,,1,5")) == ["starpay/a",
                                                                       "starpay/b"]
    assert sounds_of(cmd("EXEC Background starpay/a&starpay/b")) == ["starpay/a", "starpay/b"]
    assert sounds_of(cmd("EXEC Set X=1")) == []
    assert sounds_of(cmd("WAIT FOR DIGIT 500")) == []
