"""The cost gate and the public-access rules without a server (issue 16)."""

from __future__ import annotations

import pytest

from expert_service.access import HASH_OFF, PublicAccess, admit_query, check_version
from expert_service.answers import PredictQuery
from expert_service.auth import check_team_tokens
from expert_service.costs import CostGate, CostLimits, call_cost
from lus.errors import InvalidInput, NotFound, Overloaded


def test_cost_is_vectors_times_features_times_one_plus_contributions() -> None:
    assert call_cost(10_000, 38, 1) == 760_000
    assert call_cost(1, 38, 0) == 38
    assert call_cost(0, 38, 5) == 0


def test_the_gate_releases_what_it_admitted() -> None:
    gate = CostGate(CostLimits(max_call_cost=100, max_inflight_cost=150, max_calls_per_caller=2))
    with pytest.raises(InvalidInput, match="costs 101"), gate.admit("a", 101):
        pass
    with gate.admit("a", 100):
        with pytest.raises(Overloaded, match="LUS_EXPERT_MAX_INFLIGHT_COST"), gate.admit("b", 60):
            pass
        with (
            gate.admit("a", 50),
            pytest.raises(Overloaded, match="LUS_EXPERT_MAX_CALLS_PER_CALLER"),
            gate.admit("a", 0),
        ):
            pass
    with gate.admit("b", 100), gate.admit("a", 50):  # everything was released
        pass


def test_public_access_refuses_before_any_lookup() -> None:
    def routed(task: str) -> frozenset[int]:
        return frozenset({3})

    closed = PublicAccess()
    check_version(closed, routed, "covid", 3)
    check_version(closed, routed, "covid", 0)
    with pytest.raises(NotFound, match="versions: 3"):
        check_version(closed, routed, "covid", 2)
    with pytest.raises(InvalidInput, match="task name"):
        check_version(closed, routed, "T" * 100, 2)
    check_version(PublicAccess(unaliased_versions=True), routed, "covid", 2)
    by_hash = PredictQuery(task="covid", video_hash="ab" * 32, max_contributions=38)
    with pytest.raises(InvalidInput) as caught:
        admit_query(closed, routed, by_hash)
    assert str(caught.value) == HASH_OFF
    assert admit_query(PublicAccess(video_hash=True), routed, by_hash).max_contributions == 0


def test_team_tokens_are_checked_without_echoing_them() -> None:
    assert check_team_tokens({"radiology": "x" * 10}, min_chars=10) == {"radiology": b"x" * 10}
    for tokens in ({"": "x" * 12}, {"Radiology Team": "x" * 12}):
        with pytest.raises(ValueError, match="team name") as caught:
            check_team_tokens(tokens, min_chars=10)
        assert "x" * 12 not in str(caught.value)
