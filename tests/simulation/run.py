"""Run many simulation seeds, on every core; a failure prints its seed and trace.

python -m tests.simulation.run --seeds 2000           # seeds 0..1999
python -m tests.simulation.run --seed 1234            # replay one seed
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from tests.simulation.harness import DEFAULT_STEPS, SimulationFailure, run_seed


@dataclass
class Outcome:
    seed: int
    failure: str | None = None
    faults: dict[str, int] = field(default_factory=dict)


def run_one(seed: int, steps: int = DEFAULT_STEPS) -> Outcome:
    try:
        world = run_seed(seed, steps=steps)
    except SimulationFailure as failure:
        return Outcome(seed, failure=str(failure))
    return Outcome(seed, faults={**world.faults.injected, "restarts": world.restarts})


def run_many(seeds: Iterable[int], *, jobs: int | None = None) -> list[Outcome]:
    """Every seed's outcome, in seed order, using `jobs` processes (default: every core)."""
    seeds = list(seeds)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(seeds) == 1:
        return [run_one(seed) for seed in seeds]
    # spawn, not fork: the caller (pytest) may hold threads whose locks a fork would copy
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_one, seeds, chunksize=4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="run seeds FIRST..FIRST+N-1")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None, help="run this one seed only")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    started = time.monotonic()
    outcomes = run_many(seeds, jobs=args.jobs)
    totals: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.failure:
            print(f"FAIL {outcome.failure}", flush=True)
        for kind, count in outcome.faults.items():
            totals[kind] = totals.get(kind, 0) + count
    failed = sum(1 for o in outcomes if o.failure)
    took = time.monotonic() - started
    print(f"{len(outcomes) - failed} passed, {failed} failed in {took:.0f}s; faults: {totals}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
