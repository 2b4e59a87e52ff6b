"""`AgentHostDriver`: a host is prepared by publishing its assignment, never by a push.

The driver talks to no host. `prepare` publishes what the host should be (its node, for
one cluster) through the `HostAssignments` port; the host's agent long-polls that
assignment, converges to it and reports; `describe` reads the report. `release`
publishes "return the host clean" and is done once the agent says it holds nothing of
the cluster any more. Like every driver it keeps no state of its own: the generation it
published is in the state it returns, and the port answers the rest.

Silence is not failure: while the agent is Unknown, `describe` keeps the node's last
known phase and `release` waits, so no host is handed out that was not wiped.
"""

from __future__ import annotations

from datetime import datetime

from clusterplane.domain.agent_protocol import NodeSpec
from clusterplane.domain.enums import NodePhase
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.agent_port import DesiredNode, HostAssignments, Observation
from clusterplane.providers.models import (
    DriverState,
    InstanceSpec,
    NodeProgress,
    Progress,
    RebootKind,
)

NAME = "agent"


def _host_id(spec: InstanceSpec) -> str:
    if not spec.host_id:
        raise PermanentProviderError(f"node {spec.node_name} has no host for an agent to run")
    return spec.host_id


def desired_node(spec: InstanceSpec) -> DesiredNode:
    """The host's assignment for `spec`'s node (the flavour's sections come later)."""
    return DesiredNode(
        cluster_id=spec.cluster_id,
        node=NodeSpec(
            node_name=spec.node_name,
            instance_id=spec.instance_id,
            role=spec.role.value,
            hostname=spec.node_name,
        ),
    )


class AgentHostDriver:
    name = NAME

    def __init__(self, port: HostAssignments):
        self.port = port

    def _observe(self, spec: InstanceSpec) -> Observation:
        seen = self.port.observe(_host_id(spec))
        if seen is None:
            raise PermanentProviderError(f"no node agent is enrolled on host {spec.host_name}")
        return seen

    def prepare(self, spec: InstanceSpec, now: datetime) -> NodeProgress:
        self._observe(spec)  # a host no agent enrolled on fails here, naming it
        generation = self.port.publish(_host_id(spec), desired_node(spec))
        return self.describe(spec, {"generation": generation}, now)

    def describe(self, spec: InstanceSpec, state: DriverState, now: datetime) -> NodeProgress:
        seen = self._observe(spec)
        mine = seen.cluster_id == spec.cluster_id
        if mine and seen.phase == "failed":
            failures = "; ".join(f"{k}: {v}" for k, v in sorted(seen.failures.items()))
            message = failures or "the agent failed to prepare the node"
            return NodeProgress(False, state, True, message, NodePhase.FAILED)
        if mine and seen.converged:
            return NodeProgress(True, state, phase=NodePhase.RUNNING)
        phase = seen.node_phase if mine and seen.node_phase else NodePhase.BOOTSTRAPPING
        return NodeProgress(False, state, phase=phase)

    def release(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        if not spec.host_id:
            return Progress(True, state)  # never had a host: nothing to wipe
        generation = self.port.release(spec.host_id)
        seen = self.port.observe(spec.host_id)
        state = {**state, "released_generation": generation}
        if seen is None:
            return Progress(True, state, message="no agent on the host: nothing of ours runs")
        return Progress(seen.converged and seen.cluster_id is None, state)

    def reboot(
        self, spec: InstanceSpec, state: DriverState, kind: RebootKind, now: datetime
    ) -> NodeProgress:
        raise PermanentProviderError(
            f"a {kind.value} of agent host {spec.host_name} needs the operator's power control,"
            " which no agent host has yet"
        )
