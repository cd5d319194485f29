"""What a prediction call may cost, checked before any work: per call, all at once, per caller.

One PredictBatch of a 27,594-vector matrix with one contribution each took 673 MB and 1.6 s of
CPU for a reply of about 1 MB, so a reply-size check did not stop it, and two at once exceeded
a 1 GiB pod (issue 16). The work of a call grows with vectors x features x (1 + contributions
asked): every contribution is computed per feature and becomes Python objects. That product
is its cost. A call over ``max_call_cost`` is refused (INVALID_ARGUMENT: it could never run);
one that would take the process's calls in flight over ``max_inflight_cost``, or a caller over
``max_calls_per_caller`` running at once, gets RESOURCE_EXHAUSTED at once instead of queueing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lus.audit.callers import certificate_caller
from lus.errors import InvalidInput, Overloaded

DEFAULT_MAX_CALL_COST = 400_000
"""Largest call by default: 10,000 plain 38-d vectors, or 5,000 with one contribution each.
Peak Python allocations of one matrix, on 2 cores (``benchmarks/expert_call_cost.py``):
10,000 plain 5.9 MiB; 5,000 x 1 contribution 56 MiB and 0.35 s CPU; 10,000 x 1 (now refused)
112 MiB and 0.70 s. Any contribution costs one extra model run of n_features rows per vector,
so the formula, which grows with the number asked, over-counts many contributions on few
vectors (1,000 x 38: 11 MiB) and stays safe."""

DEFAULT_MAX_INFLIGHT_COST = 2 * DEFAULT_MAX_CALL_COST
"""Cost of the calls computing at once in one process, by default: two of the largest."""


@dataclass(frozen=True)
class CostLimits:
    """Per call, per process and per caller limits of ExpertService calls.

    Attributes:
        max_call_cost: ``LUS_EXPERT_MAX_CALL_COST``.
        max_inflight_cost: ``LUS_EXPERT_MAX_INFLIGHT_COST``.
        max_calls_per_caller: ``LUS_EXPERT_MAX_CALLS_PER_CALLER``; None where it cannot bite
            (not below the server's worker threads), so no call pays for naming its caller.
    """

    max_call_cost: int = DEFAULT_MAX_CALL_COST
    max_inflight_cost: int = DEFAULT_MAX_INFLIGHT_COST
    max_calls_per_caller: int | None = 8


def call_cost(vectors: int, features: int, contributions: int) -> int:
    """The cost unit: vectors x features x (1 + contributions asked)."""
    return max(0, vectors) * max(1, features) * (1 + max(0, contributions))


def caller_of(context: Any) -> str:
    """Who a call counts against: the client certificate under mutual TLS, else the peer's
    address without its port (one host's connections share one allowance)."""
    if context is None:  # called directly, not over gRPC (tests, embedding)
        return ""
    named = certificate_caller(context)
    if named:
        return named
    peer = str(context.peer() or "")
    host, _, port = peer.rpartition(":")
    return host if host and port.isdigit() else peer


class CostGate:
    """Admits calls within ``CostLimits``; thread-safe (the threaded server's workers)."""

    @property
    def counts_callers(self) -> bool:
        """Whether ``admit`` needs the caller's name (a per-caller limit is set)."""
        return self.limits.max_calls_per_caller is not None

    def __init__(self, limits: CostLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._inflight = 0
        self._by_caller: dict[str, int] = {}

    def check_call(self, cost: int) -> None:
        """Refuse a call over ``max_call_cost`` (INVALID_ARGUMENT, with the numbers)."""
        if cost > self.limits.max_call_cost:
            raise InvalidInput(
                f"the call costs {cost} (vectors x features x (1 + contributions)), over the "
                f"limit of {self.limits.max_call_cost} (setting LUS_EXPERT_MAX_CALL_COST); send "
                "fewer vectors per call or ask for fewer contributions"
            )

    @contextmanager
    def admit(self, caller: str, cost: int) -> Iterator[None]:
        """Hold ``cost`` and one of ``caller``'s slots while the body runs.

        Raises:
            InvalidInput: ``cost`` over ``max_call_cost``.
            Overloaded: The process's calls in flight or the caller's are at their limit.
        """
        self.check_call(cost)
        limits = self.limits
        per_caller = limits.max_calls_per_caller
        with self._lock:
            running = self._by_caller.get(caller, 0) if per_caller is not None else 0
            if per_caller is not None and running >= per_caller:
                raise Overloaded(
                    f"this caller has {running} calls running, the limit (setting "
                    "LUS_EXPERT_MAX_CALLS_PER_CALLER); wait for one to finish"
                )
            if self._inflight and self._inflight + cost > limits.max_inflight_cost:
                raise Overloaded(
                    f"calls costing {self._inflight} are computing; this one ({cost}) would pass "
                    f"the limit of {limits.max_inflight_cost} (setting "
                    "LUS_EXPERT_MAX_INFLIGHT_COST); retry shortly"
                )
            self._inflight += cost
            if per_caller is not None:
                self._by_caller[caller] = running + 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= cost
                if per_caller is not None:
                    left = self._by_caller[caller] - 1
                    if left:
                        self._by_caller[caller] = left
                    else:
                        del self._by_caller[caller]
