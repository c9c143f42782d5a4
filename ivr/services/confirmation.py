"""Confirmation codes: what the caller hears after a charge and reads back to an agent.

A code is 8 digits: 7 payload digits and a Damm check digit. The payload is the payment id
sent through a fixed permutation of 0..9,999,999, so consecutive payments do not get
consecutive codes and a code says nothing about how many payments came before it.

The permutation key below is a public constant, NOT a secret: a code is not an authenticator
(whoever holds it still goes through the agent's usual checks). It only has to be short,
unique, hard to mistype unnoticed, and not sequential.

Forms accepted when a code is read back (they cannot be confused with one another):

- 8 digits: the current form.
- ``0`` + the payment id + Damm digit, 10 or more digits: the fallback for payment ids from
  10,000,000 on, past the permutation's domain.
- the id zero-padded to 8 digits + a Luhn digit, 9 digits: the form given out before, which
  must keep resolving (it grew to 10 digits only past 100,000,000 payments, never reached).
"""

from __future__ import annotations

from functools import cache

PAYLOAD_DIGITS = 7
DOMAIN = 10 ** PAYLOAD_DIGITS  # payment ids below this get the 8-digit code

# 10**7 = 1000 * 10000: a Feistel network on unequal halves, which swap sizes each round;
# an even number of rounds brings them back, so the map stays within 0..DOMAIN-1.
_SMALL, _LARGE = 1_000, 10_000
# Public round keys (see the module docstring: not a secret).
_ROUND_KEYS = (0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C,
               0x1F83D9AB, 0x5BE0CD19, 0x6A09E667, 0xBB67AE85)
_MASK64 = (1 << 64) - 1

# Damm's quasigroup of order 10 (weakly totally anti-symmetric, zero diagonal): the check
# digit catches every single wrong digit and every swap of two adjacent different digits.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def confirmation_number(payment_id: int) -> str:
    """The code for a payment: 8 digits (permuted id + Damm digit) for ids below 10,000,000;
    from there on a longer code, ``0`` + the id + Damm digit (10 or more digits)."""
    if payment_id < 0:
        raise ValueError(f"payment id must not be negative: {payment_id}")
    if payment_id < DOMAIN:
        payload = permute(payment_id)
        hi, lo = divmod(payload, 10_000)
        block = _damm_blocks()
        # hi has 3 digits; running it as 4 with a leading 0 is the same (_DAMM[0][0] == 0).
        return f"{payload:0{PAYLOAD_DIGITS}d}{block[block[0][hi]][lo]}"
    body = f"0{payment_id}"
    return body + str(damm_digit(body))


def payment_id_from_confirmation(confirmation: str) -> int | None:
    """The payment id a code read back stands for, or None if it is not a valid code
    (wrong length, not digits, or a check digit that does not match)."""
    c = confirmation.strip()
    if not (c.isascii() and c.isdigit()):
        return None
    if len(c) == PAYLOAD_DIGITS + 1:
        if damm_digit(c) != 0:  # a valid code, check digit included, reduces to 0
            return None
        return unpermute(int(c[:-1]))
    if len(c) >= 10 and c[0] == "0":
        payment_id = int(c[1:-1])
        return payment_id if damm_digit(c) == 0 and confirmation_number(payment_id) == c else None
    if len(c) == 9:
        payment_id = int(c[:-1])
        return payment_id if _old_confirmation(payment_id) == c else None
    return None


def permute(x: int) -> int:
    """A bijection of 0..DOMAIN-1 onto itself (the code's payload)."""
    a, b = divmod(x, _LARGE)  # a < _SMALL, b < _LARGE
    for table, size in _round_tables():
        a, b = b, (a + table[b]) % size
    return a * _LARGE + b


def unpermute(y: int) -> int:
    """The inverse of :func:`permute`."""
    a, b = divmod(y, _LARGE)
    for table, size in reversed(_round_tables()):
        a, b = (b - table[a]) % size, a
    return a * _LARGE + b


@cache
def _round_tables() -> tuple[tuple[tuple[int, ...], int], ...]:
    # Each round's function of a half, precomputed (at most 10,000 entries a round) so a
    # round is one lookup: a million codes take about a second rather than ten.
    tables = []
    for i, key in enumerate(_ROUND_KEYS):
        size, half_size = (_SMALL, _LARGE) if i % 2 == 0 else (_LARGE, _SMALL)
        tables.append((tuple(_mix(key, h) % size for h in range(half_size)), size))
    return tuple(tables)


def _mix(key: int, half: int) -> int:
    # A 64-bit multiply-xorshift mix: scrambles well enough for a permutation whose only
    # job is to hide order (it is not meant to resist an attacker).
    h = ((half + key) * 0x9E3779B97F4A7C15) & _MASK64
    h ^= h >> 31
    h = (h * 0xBF58476D1CE4E5B9) & _MASK64
    return h ^ (h >> 29)


def damm_digit(digits: str) -> int:
    """Damm's check digit for ``digits``; 0 when ``digits`` already ends in a right one."""
    return _damm_from(0, digits)


@cache
def _damm_blocks() -> tuple[tuple[int, ...], ...]:
    # Damm's interim digit after any 4 digits, from each interim digit: a payload's check
    # digit is then two lookups, which matters when codes are made by the million (tests).
    return tuple(tuple(_damm_from(start, f"{n:04d}") for n in range(10_000))
                 for start in range(10))


def _damm_from(interim: int, digits: str) -> int:
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


def _old_confirmation(payment_id: int) -> str:
    # The form given out before: id padded to 8 digits plus a Luhn digit.
    body = f"{payment_id:08d}"
    return body + _luhn_digit(body)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)
