"""Faults a simulation injects: a flaky driver, failing commits and process crashes.

Every decision comes from the simulation's seeded random generator, so a seed replays the
same faults at the same points.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.errors import TemporaryError
from clusterplane.providers.models import (
    ClusterStepSpec,
    DriverState,
    InstanceSpec,
    InstanceStatus,
    StepStatus,
    TerminationStatus,
    VolumeSpec,
    VolumeStatus,
)
from clusterplane.providers.simulated import SimulatedProvider


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
                raise TemporaryError(f"{verb}: timed out", delay_seconds=5)
            raise RuntimeError(f"{verb}: driver error")

    def install_commit_failures(self, sessions: sessionmaker[Session]) -> None:
        @event.listens_for(sessions, "before_commit")
        def _fail(session: Session) -> None:
            if session.info.get("simulation_safe"):
                return
            if self.roll("commit_failure", self.commit_failure):
                raise RuntimeError("injected commit failure")


class FaultyProvider(SimulatedProvider):
    """The simulated driver, with seeded errors, timeouts and crashes before each verb."""

    def __init__(self, faults: Faults, **kwargs: Any):
        super().__init__(**kwargs)
        self.faults = faults

    def launch_instance(self, spec: InstanceSpec, now: datetime) -> DriverState:
        self.faults.driver_call("launch_instance")
        return super().launch_instance(spec, now)

    def describe_instance(
        self, spec: InstanceSpec, state: DriverState, now: datetime
    ) -> InstanceStatus:
        self.faults.driver_call("describe_instance")
        return super().describe_instance(spec, state, now)

    def terminate_instance(
        self, spec: InstanceSpec, state: DriverState, now: datetime
    ) -> TerminationStatus:
        self.faults.driver_call("terminate_instance")
        return super().terminate_instance(spec, state, now)

    def reboot_instance(self, spec: InstanceSpec, state: DriverState, now: datetime) -> DriverState:
        self.faults.driver_call("reboot_instance")
        return super().reboot_instance(spec, state, now)

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> DriverState:
        self.faults.driver_call("start_step")
        return super().start_step(spec, now)

    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> StepStatus:
        self.faults.driver_call("poll_step")
        return super().poll_step(spec, state, now)

    def create_volume(self, spec: VolumeSpec, now: datetime) -> DriverState:
        self.faults.driver_call("create_volume")
        return super().create_volume(spec, now)

    def describe_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> VolumeStatus:
        self.faults.driver_call("describe_volume")
        return super().describe_volume(spec, state, now)

    def resize_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> DriverState:
        self.faults.driver_call("resize_volume")
        return super().resize_volume(spec, state, now)

    def delete_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> TerminationStatus:
        self.faults.driver_call("delete_volume")
        return super().delete_volume(spec, state, now)
