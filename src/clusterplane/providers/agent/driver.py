"""`AgentHostDriver`: a host is prepared by publishing its assignment, never by a push.

The driver talks to no host. `prepare` publishes what the host should be (its node for
one cluster: identity, the cluster's users, the SSH user CA it trusts, the shared volumes
it mounts; `InstanceSpec.access`) through the `HostAssignments` port; the host's agent
long-polls that assignment, converges to it and reports; `describe` reads the report, and
publishes again when what the node should give its cluster changed (a CA turned on or
rotated, a new SSH policy, a volume that became ready). `release` publishes "return the
host clean" and is done once the agent says it holds nothing of the cluster any more.
Like every driver it keeps no state of its own: the generation it published and a digest
of what it published are in the state it returns, and the port answers the rest.

Silence is not failure: while the agent is Unknown, `describe` keeps the node's last
known phase and `release` waits, so no host is handed out that was not wiped.

Its check feature (`HostChecks`, in `checks`) has the host's agent run active checks;
reboots and power cycles are refused (`PermanentProviderError`): agent hosts have no
power control yet.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import ValidationError

from clusterplane.domain.agent_protocol import MountSpec, NodeSpec, UserSpec
from clusterplane.domain.enums import NodePhase
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.agent import checks
from clusterplane.providers.agent_port import DesiredNode, HostAssignments, Observation
from clusterplane.providers.models import (
    CheckProgress,
    CheckSpec,
    DriverState,
    HostSpec,
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
    """The host's assignment for `spec`'s node (its flavour's runtimes are its own to publish)."""
    access = spec.access
    try:
        return DesiredNode(
            cluster_id=spec.cluster_id,
            node=NodeSpec(
                node_name=spec.node_name,
                instance_id=spec.instance_id,
                role=spec.role.value,
                hostname=spec.node_name,
            ),
            users=tuple(UserSpec(name=u.name, uid=u.uid) for u in access.users),
            ssh_user_ca_keys=access.ssh_user_ca_keys,
            mounts=tuple(
                MountSpec(volume_id=m.volume_id, source=m.source, target=m.target)
                for m in access.mounts
            ),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise PermanentProviderError(
            f"node {spec.node_name} cannot be described to its agent: {where} "
            f"{problem.get('input')!r}: {problem['msg']}"
        ) from None


def digest(desired: DesiredNode) -> str:
    """What was published, in a few bytes: a changed digest means publish again."""
    doc = [
        desired.cluster_id,
        desired.node.model_dump(mode="json"),
        [u.model_dump(mode="json") for u in desired.users],
        list(desired.ssh_user_ca_keys),
        [m.model_dump(mode="json") for m in desired.mounts],
    ]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _published(state: DriverState) -> str | None:
    """The digest in a state `prepare` or `describe` returned; other state is unreadable."""
    generation, published = state.get("generation"), state.get("published")
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise PermanentProviderError("unreadable agent host state: no published generation")
    if published is not None and not isinstance(published, str):
        raise PermanentProviderError("unreadable agent host state: a bad digest")
    return published


class AgentHostDriver:
    name = NAME

    def __init__(self, port: HostAssignments):
        self.port = port

    def _observe(self, spec: InstanceSpec) -> Observation:
        seen = self.port.observe(_host_id(spec))
        if seen is None:
            raise PermanentProviderError(f"no node agent is enrolled on host {spec.host_name}")
        return seen

    def _publish(self, spec: InstanceSpec, state: DriverState) -> DriverState:
        desired = desired_node(spec)
        if state and _published(state) == digest(desired):
            return state
        generation = self.port.publish(_host_id(spec), desired)
        return {**state, "generation": generation, "published": digest(desired)}

    def prepare(self, spec: InstanceSpec, now: datetime) -> NodeProgress:
        self._observe(spec)  # a host no agent enrolled on fails here, naming it
        return self._describe(spec, self._publish(spec, {}))

    def describe(self, spec: InstanceSpec, state: DriverState, now: datetime) -> NodeProgress:
        _published(state)
        return self._describe(spec, self._publish(spec, state))

    def _describe(self, spec: InstanceSpec, state: DriverState) -> NodeProgress:
        seen = self._observe(spec)
        mine = seen.cluster_id == spec.cluster_id
        if mine and seen.phase == "failed":
            failures = "; ".join(f"{k}: {v}" for k, v in sorted(seen.failures.items()))
            message = failures or "the agent failed to prepare the node"
            return NodeProgress(False, state, True, message, NodePhase.FAILED)
        if mine and seen.converged:
            return NodeProgress(True, {**state, "running": True}, phase=NodePhase.RUNNING)
        if mine and state.get("running") is True and seen.phase in ("ready", "converging"):
            # A change to a running node (a new CA, user or volume) is applied in place:
            # the node serves on meanwhile; only a failure to apply it fails the node.
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

    # -- the check feature (HostChecks) ----------------------------------------------------

    def start_check(self, host: HostSpec, check: CheckSpec, now: datetime) -> CheckProgress:
        return checks.start_check(self.port, host, check, now)

    def poll_check(
        self, host: HostSpec, check: CheckSpec, state: DriverState, now: datetime
    ) -> CheckProgress:
        return checks.poll_check(self.port, host, check, state, now)
