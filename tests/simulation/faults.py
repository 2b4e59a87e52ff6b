"""Faults a simulation injects: a flaky driver, failing commits and process crashes.

Every decision comes from the simulation's seeded random generator, so a seed replays the
same faults at the same points.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.errors import TemporaryProviderError
from clusterplane.providers.registry import Drivers
from clusterplane.settings import Settings
from clusterplane.simulation.wiring import simulated_drivers


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this line runs, nothing is cleaned up.

    A BaseException, so no `except Exception` in the engine can swallow it.
    """


class Faults:
    """Fault rates and the generator that decides; all rates 0 means a healthy world."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.driver_error = 0.0
        self.driver_crash = 0.0
        self.commit_failure = 0.0
        self.injected: dict[str, int] = {"driver_error": 0, "crash": 0, "commit_failure": 0}

    def calm(self) -> None:
        self.driver_error = self.driver_crash = self.commit_failure = 0.0

    def storm(self) -> None:
        self.driver_error = self.rng.choice([0.0, 0.05, 0.2])
        self.driver_crash = self.rng.choice([0.0, 0.01, 0.03])
        self.commit_failure = self.rng.choice([0.0, 0.02, 0.08])

    def roll(self, kind: str, rate: float) -> bool:
        if rate and self.rng.random() < rate:
            self.injected[kind] += 1
            return True
        return False

    def driver_call(self, verb: str) -> None:
        if self.roll("crash", self.driver_crash):
            raise SimulatedCrash(f"killed during {verb}")
        if self.roll("driver_error", self.driver_error):
            if self.rng.random() < 0.5:
                raise TemporaryProviderError(f"{verb}: timed out", delay_seconds=5)
            raise RuntimeError(f"{verb}: driver error")

    def install_commit_failures(self, sessions: sessionmaker[Session]) -> None:
        @event.listens_for(sessions, "before_commit")
        def _fail(session: Session) -> None:
            if session.info.get("simulation_safe"):
                return
            if self.roll("commit_failure", self.commit_failure):
                raise RuntimeError("injected commit failure")


class Faulty:
    """A driver with seeded errors, timeouts and crashes before each of its verbs."""

    def __init__(self, driver: Any, faults: Faults):
        self._driver = driver
        self._faults = faults

    def __getattr__(self, verb: str) -> Any:
        attribute = getattr(self._driver, verb)
        if verb.startswith("_") or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._faults.driver_call(verb)
            return attribute(*args, **kwargs)

        return call


def faulty_drivers(
    faults: Faults, settings: Settings
) -> Callable[[sessionmaker[Session]], Drivers]:
    """The simulated drivers, every one of them faulty."""

    def make(sessions: sessionmaker[Session]) -> Drivers:
        drivers = simulated_drivers(settings, sessions)
        return Drivers(
            hosts={name: Faulty(host, faults) for name, host in drivers.hosts.items()},
            flavours={name: Faulty(f, faults) for name, f in drivers.flavours.items()},
            storage=Faulty(drivers.storage, faults),
        )

    return make
