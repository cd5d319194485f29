"""The upload budget: reservations grow, refuse with the numbers and give everything back."""

from __future__ import annotations

import pytest

from biomarker_service.admission import UploadBudget
from lus.errors import InvalidInput, Overloaded


def test_reservations_share_the_budget_and_give_it_back() -> None:
    budget = UploadBudget(100)
    with budget.reserve(60) as first:
        with pytest.raises(Overloaded, match=r"an upload of 50 bytes does not fit now: 60 of"):
            budget.reserve(50)
        second = budget.reserve(0)
        second.grow(40)
        assert budget.in_use_bytes == 100
        with pytest.raises(Overloaded):
            second.grow(1)
        assert second.nbytes == 40, "a refused growth keeps what was held"
        second.release()
        second.release()  # twice is harmless
        first.grow(10)
    assert budget.in_use_bytes == 0


def test_more_than_the_whole_budget_is_invalid_not_overloaded() -> None:
    budget = UploadBudget(100)
    with pytest.raises(InvalidInput, match="whole upload budget of 100 bytes"):
        budget.reserve(101)
    reservation = budget.reserve(60)
    with pytest.raises(InvalidInput, match="an upload of 101 bytes exceeds"):
        reservation.grow(41)
    reservation.release()
    assert budget.in_use_bytes == 0
