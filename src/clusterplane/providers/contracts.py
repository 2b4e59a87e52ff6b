"""The driver roles, after Cluster API's infrastructure / bootstrap / control-plane split.

* `HostDriver`: prepares one host as a cluster node, describes it, releases and wipes it,
  reboots or power-cycles it. Picked per host (`hosts.driver`: `simulated`, `agent`).
* `ClusterFlavour`: what makes nodes a Slurm or Kubernetes cluster: the bring-up steps
  (`BringUpStep`), joining and removing nodes, applying config, and draining that knows
  who drained a node. Picked per cluster type.
* `StorageDriver`: shared volumes.
* `HostChecks`: an optional feature of a host driver (dstack's `ComputeWith*` pattern):
  active checks (DCGM, GPU burn, NCCL, IB). Acceptance tests and health checks run through
  it, so a real host's failing check fails them; a driver without it cannot be tested.

Every verb is idempotent and non-blocking: it starts work or reports where it stands, and
returns typed progress whose `state` the controller persists and hands back unread.
Calling a verb again with the state persisted before a crash converges to the same
outcome. A driver says "not yet" by raising `TemporaryProviderError(delay_seconds)` and
"this failed" by raising `PermanentProviderError` or returning progress with `failed`.
Verbs are given `now` so simulated drivers run on the injected clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from clusterplane.providers.models import (
    CheckProgress,
    CheckSpec,
    ClusterConfigSpec,
    ClusterStepSpec,
    DrainProgress,
    DrainSpec,
    DriverState,
    HostSpec,
    InstanceSpec,
    NodeProgress,
    Progress,
    RebootKind,
    VolumeProgress,
    VolumeSpec,
)


class HostDriver(Protocol):
    name: str

    def prepare(self, spec: InstanceSpec, now: datetime) -> NodeProgress:
        """Start making the host the node `spec` describes (ensure: a repeat is harmless)."""
        ...

    def describe(self, spec: InstanceSpec, state: DriverState, now: datetime) -> NodeProgress:
        """Where the node's preparation (or a reboot) stands."""
        ...

    def release(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        """Take the node off the host and wipe it; `done` once the host is clean (a
        release of a node already gone is done)."""
        ...

    def reboot(
        self, spec: InstanceSpec, state: DriverState, kind: RebootKind, now: datetime
    ) -> NodeProgress:
        """Reboot or power-cycle the node in place; its progress starts over from booting."""
        ...


@runtime_checkable
class HostChecks(Protocol):
    """Active checks on a host; `figures` are judged by `domain.checks.judge`.

    `check.run_id` names the run. Acceptance checks (purpose `acceptance`) are started
    again under the same run id on every pass until done, so for them `start_check` must
    report the run already started, never start a second; other runs are started once
    and polled with their saved state (a repeat after a crash may start them afresh)."""

    def start_check(self, host: HostSpec, check: CheckSpec, now: datetime) -> CheckProgress: ...

    def poll_check(
        self, host: HostSpec, check: CheckSpec, state: DriverState, now: datetime
    ) -> CheckProgress: ...


class ClusterFlavour(Protocol):
    name: str

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> Progress: ...

    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> Progress: ...

    def join_node(self, spec: InstanceSpec, now: datetime) -> Progress:
        """Make a prepared node a member of the cluster (ensure)."""
        ...

    def remove_node(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        """Take a node out of the cluster; `done` once it is no longer a member."""
        ...

    def apply_config(self, spec: ClusterConfigSpec, now: datetime) -> Progress:
        """Make the running cluster's add-ons and config what `spec` says (ensure)."""
        ...

    def drain(self, spec: DrainSpec, state: DriverState | None, now: datetime) -> DrainProgress:
        """Drain the nodes (no new work; `done` once they run nothing); `state` is None on
        the first call and the returned state after."""
        ...

    def undrain(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        """Return the nodes to service, only those `spec.drained_by` drained."""
        ...

    def is_drained(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        """Whether the nodes are drained and by whom (`drained_by`), without changing them."""
        ...


class StorageDriver(Protocol):
    name: str

    def create_volume(self, spec: VolumeSpec, now: datetime) -> VolumeProgress: ...

    def describe_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> VolumeProgress: ...

    def resize_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> VolumeProgress: ...

    def delete_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> Progress: ...
