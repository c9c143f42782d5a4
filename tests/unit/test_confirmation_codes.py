"""Confirmation codes: 8 digits with a Damm check digit, unique, not sequential, and the
9-digit codes given out before still resolve."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.services import payments
from ivr.services.confirmation import (
    _DAMM,
    DOMAIN,
    confirmation_number,
    damm_digit,
    payment_id_from_confirmation,
)

MILLION = 1_000_000
EDGES = [0, 1, 2, 9, 10, 9_999, 10_000, 999_999, MILLION, DOMAIN - 2, DOMAIN - 1]
permuted_ids = st.one_of(st.integers(min_value=1, max_value=DOMAIN - 1), st.sampled_from(EDGES))
fallback_ids = st.integers(min_value=DOMAIN, max_value=10**15)
any_ids = st.one_of(permuted_ids, fallback_ids)


def old_code(payment_id: int) -> str:
    """The form given out before, computed here independently: id padded to 8 + Luhn."""
    body = f"{payment_id:08d}"
    total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2)
                for i, d in enumerate(int(ch) for ch in reversed(body)))
    return body + str(-total % 10)


@pytest.fixture(scope="module")
def first_million() -> list[str]:
    started = time.perf_counter()
    codes = [confirmation_number(pid) for pid in range(1, MILLION + 1)]
    print(f"\n{MILLION:,} confirmation codes in {time.perf_counter() - started:.2f} s")
    return codes


def test_damm_table_is_a_weakly_totally_antisymmetric_quasigroup() -> None:
    digits = set(range(10))
    assert all(set(row) == digits for row in _DAMM)
    assert all({row[j] for row in _DAMM} == digits for j in range(10))
    assert all(_DAMM[i][i] == 0 for i in range(10))
    for c, x, y in itertools.product(range(10), repeat=3):
        if x != y:
            assert _DAMM[_DAMM[c][x]][y] != _DAMM[_DAMM[c][y]][x], (c, x, y)


@given(any_ids)
def test_round_trip(pid: int) -> None:
    code = confirmation_number(pid)
    assert code.isdigit() and damm_digit(code) == 0
    assert payment_id_from_confirmation(code) == pid
    assert payment_id_from_confirmation(f" {code}\n") == pid


@pytest.mark.parametrize("pid", EDGES)
def test_round_trip_at_the_edges(pid: int) -> None:
    code = confirmation_number(pid)
    assert len(code) == 8
    assert payment_id_from_confirmation(code) == pid


@given(permuted_ids)
def test_first_ten_million_ids_get_eight_digits(pid: int) -> None:
    assert len(confirmation_number(pid)) == 8


@given(fallback_ids)
def test_past_ten_million_the_code_is_zero_id_check(pid: int) -> None:
    code = confirmation_number(pid)
    assert code[0] == "0" and code[1:-1] == str(pid) and len(code) >= 10


def test_payments_module_gives_the_same_functions() -> None:
    assert payments.confirmation_number(18) == confirmation_number(18)
    assert payments.payment_id_from_confirmation(confirmation_number(18)) == 18


@given(any_ids)
def test_every_single_wrong_digit_is_caught(pid: int) -> None:
    code = confirmation_number(pid)
    for pos in range(len(code)):
        for d in "0123456789":
            if d != code[pos]:
                wrong = code[:pos] + d + code[pos + 1:]
                assert payment_id_from_confirmation(wrong) is None, (code, wrong)


@given(any_ids)
def test_every_adjacent_swap_is_caught(pid: int) -> None:
    code = confirmation_number(pid)
    for pos in range(len(code) - 1):
        if code[pos] != code[pos + 1]:
            swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2:]
            assert payment_id_from_confirmation(swapped) is None, (code, swapped)


def test_first_million_codes_are_all_different(first_million: list[str]) -> None:
    assert all(len(c) == 8 for c in first_million)
    assert len(set(first_million)) == MILLION


def test_codes_are_not_sequential(first_million: list[str]) -> None:
    numbers = [int(c) for c in first_million]
    pairs = list(itertools.pairwise(numbers))
    step_of_one = sum(1 for a, b in pairs if abs(b - a) == 1)
    rising = sum(1 for a, b in pairs if b > a)
    near = sum(1 for a, b in pairs if abs(b - a) < 1_000)
    assert step_of_one < 10
    # Order does not leak either: a later payment's code is as likely lower as higher,
    # and rarely close to the one before.
    assert 0.45 < rising / len(pairs) < 0.55
    assert near / len(pairs) < 0.01
    assert first_million[:5] != sorted(first_million[:5])


def test_leading_digits_are_spread(first_million: list[str]) -> None:
    # Small ids must not all share a prefix (which would tell a code's age from its start).
    first = {c[0] for c in first_million[:1_000]}
    assert first == set("0123456789")


@given(st.integers(min_value=1, max_value=99_999_999))
def test_old_nine_digit_codes_still_resolve(pid: int) -> None:
    assert payment_id_from_confirmation(old_code(pid)) == pid


def test_an_old_code_read_back_as_printed_before() -> None:
    assert payment_id_from_confirmation("000000018") == 1
    assert payment_id_from_confirmation("000000019") is None


@given(st.integers(min_value=1, max_value=99_999_999), st.integers(min_value=0, max_value=8),
       st.integers(min_value=1, max_value=9))
def test_an_old_code_with_one_wrong_digit_is_refused(pid: int, pos: int, delta: int) -> None:
    code = old_code(pid)
    wrong = code[:pos] + str((int(code[pos]) + delta) % 10) + code[pos + 1:]
    assert payment_id_from_confirmation(wrong) is None


@given(any_ids, st.integers(min_value=1, max_value=9))
def test_a_wrong_check_digit_gives_none(pid: int, delta: int) -> None:
    code = confirmation_number(pid)
    wrong = code[:-1] + str((int(code[-1]) + delta) % 10)
    assert payment_id_from_confirmation(wrong) is None


@pytest.mark.parametrize("garbage", [
    "", " ", "abc", "1234567", "123456789012x", "2335210a", "2335 2101", "-2335210",
    "２３３５２１０１",  # full-width digits are digits to str.isdigit, not to us
    "1100000006",  # 10 digits without the leading 0: neither form
    "00001234567" + str(damm_digit("00001234567")),  # fallback form for a small id
    "9" * 40,
])
def test_garbage_gives_none(garbage: str) -> None:
    assert payment_id_from_confirmation(garbage) is None


def test_a_negative_id_has_no_code() -> None:
    with pytest.raises(ValueError):
        confirmation_number(-1)
