from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ivr.services.payments import confirmation_number, payment_id_from_confirmation


@given(st.integers(min_value=1, max_value=999_999_999))
def test_round_trip_digits_only(pid):
    c = confirmation_number(pid)
    assert c.isdigit() and 9 <= len(c) <= 10
    assert payment_id_from_confirmation(c) == pid


@given(st.integers(min_value=1, max_value=99_999_999), st.integers(min_value=0, max_value=8),
       st.integers(min_value=1, max_value=9))
def test_one_wrong_digit_is_caught(pid, pos, delta):
    c = confirmation_number(pid)
    wrong = c[:pos] + str((int(c[pos]) + delta) % 10) + c[pos + 1:]
    assert payment_id_from_confirmation(wrong) is None
