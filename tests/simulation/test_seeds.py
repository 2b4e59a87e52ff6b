"""Deterministic simulation seeds: each one a whole random history with injected faults.

`CLUSTERPLANE_SIMULATION_SEEDS` sets how many run here (default 200, spread over every
core); thousands run with `make simulate SEEDS=5000`. A failing seed is named in the
failure and replays exactly with `python -m tests.simulation.run --seed N`.
"""

from __future__ import annotations

import os

import pytest

from tests.simulation.harness import run_seed
from tests.simulation.run import run_many

SEEDS = int(os.environ.get("CLUSTERPLANE_SIMULATION_SEEDS", "200"))


@pytest.mark.timeout(1200)
def test_every_seed_keeps_the_invariants_and_converges_under_faults() -> None:
    outcomes = run_many(range(SEEDS))
    failures = [o.failure for o in outcomes if o.failure]
    assert not failures, f"{len(failures)} of {SEEDS} seeds failed:\n" + "\n".join(failures[:3])
    injected = {
        kind: sum(o.faults.get(kind, 0) for o in outcomes)
        for kind in ("driver_error", "crash", "commit_failure", "restarts")
    }
    assert all(count > 0 for count in injected.values()), f"every fault was exercised: {injected}"


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(3), run_seed(3)
    assert first.trace == second.trace
    assert first.faults.injected == second.faults.injected
