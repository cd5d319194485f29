"""Exponential backoff with jitter, shared by analysis retries and report sends."""

from __future__ import annotations

import random


def backoff_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Delay before try ``attempt + 1`` (``attempt`` failures so far, from 1): doubling from
    ``initial_s`` up to ``max_s``, times a random factor in [0.5, 1), so replicas and jobs
    that failed together do not retry in lock-step."""
    ceiling = min(max_s, initial_s * 2.0 ** max(0, attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)
