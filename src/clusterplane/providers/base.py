"""The driver interface: a small fixed set of verbs, all idempotent and non-blocking.

A verb never sleeps waiting for infrastructure. It starts work or reports where the work
stands; callers poll again later. Verbs are given `now` so the simulated driver runs on the
injected clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from clusterplane.providers.models import (
    ClusterConfigSpec,
    ClusterStepSpec,
    DriverState,
    InstanceSpec,
    InstanceStatus,
    StepStatus,
    TerminationStatus,
    VolumeSpec,
    VolumeStatus,
)


class Provider(Protocol):
    name: str

    def launch_instance(self, spec: InstanceSpec, now: datetime) -> DriverState:
        """Ensure the instance exists and is booting; returns the state to persist."""
        ...

    def describe_instance(
        self, spec: InstanceSpec, state: DriverState, now: datetime
    ) -> InstanceStatus: ...

    def terminate_instance(
        self, spec: InstanceSpec, state: DriverState, now: datetime
    ) -> TerminationStatus:
        """Ensure the instance is going away; `done` once it is gone (gone stays gone)."""
        ...

    def reboot_instance(self, spec: InstanceSpec, state: DriverState, now: datetime) -> DriverState:
        """Reboot (or power-cycle) the instance in place; returns the state to persist."""
        ...

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> DriverState: ...

    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> StepStatus: ...

    def apply_cluster_config(self, spec: ClusterConfigSpec, now: datetime) -> DriverState:
        """Make the running cluster's add-ons and config what `spec` says (idempotent);
        returns what was applied, which the controller records."""
        ...

    def create_volume(self, spec: VolumeSpec, now: datetime) -> DriverState: ...

    def describe_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> VolumeStatus: ...

    def resize_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> DriverState: ...

    def delete_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> TerminationStatus: ...
