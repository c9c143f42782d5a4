"""Hostile FastAGI clients, run as their own process so their CPU is not the server's:

    python -m tests.faults.agi_attack SECONDS PORT [PORT...]

prints one JSON line: garbage connections made, whether each slow client was hung up on,
bytes flooded. Every loop is bounded by the deadline and a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def garbage(port: int, n: int) -> int:
    """Connections that send random bytes (with blank lines, so some look like headers)."""
    done = 0
    for _ in range(n):
        with contextlib.suppress(OSError):
            _, w = await _connect(port)
            w.write(os.urandom(2048) + b"\n\n" + os.urandom(512))
            await w.drain()
            w.close()
            done += 1
        await asyncio.sleep(0.02)
    return done


async def slow(port: int, until: float) -> bool:
    """One byte per second of a plausible header block; True if the server hung up on us."""
    text = b"agi_network: yes\nagi_network_script: pay\nagi_callerid: +15551234567\n"
    r, w = await _connect(port)
    try:
        for byte in text:
            if time.monotonic() > until:
                return False
            w.write(bytes([byte]))
            await w.drain()
            try:
                if await asyncio.wait_for(r.read(100), 1.0) == b"":
                    return True  # closed by the server
            except TimeoutError:
                continue
        return False
    except ConnectionError:
        return True
    finally:
        w.close()


async def flood(port: int, until: float) -> int:
    """Never-ending: header-looking lines with no blank line, as fast as the server reads;
    reconnects each time it is dropped, until ``until``. Bytes sent."""
    sent = 0
    line = b"agi_x: " + b"y" * 1000 + b"\n"
    for _ in range(10_000):  # bounded; the deadline ends it long before
        if time.monotonic() > until:
            break
        try:
            _, w = await _connect(port)
            while time.monotonic() < until:
                w.write(line * 16)
                await asyncio.wait_for(w.drain(), 2)
                sent += len(line) * 16
            w.close()
        except (ConnectionError, TimeoutError):
            await asyncio.sleep(0.01)
    return sent


async def attack(seconds: float, ports: list[int]) -> dict[str, object]:
    until = time.monotonic() + seconds
    garbage_runs = [garbage(p, 100) for p in ports]
    slow_runs = [slow(p, until) for p in ports for _ in range(5)]
    flood_runs = [flood(p, until) for p in ports for _ in range(3)]
    g = await asyncio.gather(*garbage_runs)
    s = await asyncio.gather(*slow_runs)
    f = await asyncio.gather(*flood_runs)
    return {"garbage": sum(g), "slow_hung_up": s, "flooded": sum(f)}


if __name__ == "__main__":
    secs, *port_args = sys.argv[1:]
    print(json.dumps(asyncio.run(attack(float(secs), [int(p) for p in port_args]))),
          flush=True)
