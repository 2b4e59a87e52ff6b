"""`AgentSlurmFlavour`: SLURM clusters that really run, on hosts managed by node agents.

Everything happens through the hosts' assignments (`providers.agent_port`): the flavour
patches a `slurm` runtime section (schema: `clusterplane.agent.slurm.section`) into the
assignment of each of the cluster's hosts and reads what their agents report.

* The control-plane node's host is the controller: munged and slurmctld, configless.
  Joining it writes its section (slurm.conf and gres.conf rendered by `config`, the
  controller's scripts, the munge key as a secret of the assignment) and is done once
  slurmctld answers.
* A GPU worker joins with a dynamic `slurmd -Z` section (its devices and size from its
  agent's inventory) once the controller is up; done once Slurm knows the node.
* Drains, resumes and removals are the controller's `drain` and `remove` maps; its agent
  applies them and reports Slurm's view of every node (`nodes`), which `is_drained`,
  `remove_node` and health read. Only drains whose reason starts `clusterplane:` are ever
  resumed, so a node an operator drained by hand stays drained; a drain on someone else's
  behalf (`DrainSpec.drained_by`) says so in its reason (`clusterplane: on behalf of
  <who>: ...`), and only an undrain on that one's behalf resumes it.
* A leaving worker is drained until its jobs end, then its `slurm` section is removed
  and it is deleted from slurmctld once its agent stopped slurmd (a live slurmd would
  register the node again at the agent's next pass); a node Slurm already sees down is
  deleted without waiting for a silent agent.
* Changed startup scripts reach every host through `apply_config`; a changed slurm.conf
  restarts slurmctld (running jobs survive) and bumps the workers' `config_generation`.

The munge key is the cluster's own random secret (`port.cluster_secret`), kept sealed by
the control plane. Like every driver it keeps no state: the port answers everything.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from clusterplane.domain.enums import NodeRole
from clusterplane.errors import InvalidRequest, PermanentProviderError
from clusterplane.providers import drain_reasons
from clusterplane.providers.agent_port import HostAssignments, Observation, Peer
from clusterplane.providers.drain_reasons import PREFIX
from clusterplane.providers.models import (
    ClusterConfigSpec,
    ClusterStepSpec,
    DrainProgress,
    DrainSpec,
    DriverState,
    InstanceSpec,
    Progress,
)
from clusterplane.providers.slurm.config import (
    CONTROLLER_EPILOG,
    CONTROLLER_PROLOG,
    LOGIN_INIT,
    NODESET_INIT,
    WORKER_EPILOG,
    WORKER_PROLOG,
    SlurmClusterSpec,
    SlurmFiles,
    SlurmNode,
    SlurmStartupScripts,
    config_generation,
    render_files,
    worker_node_conf,
)
from clusterplane.settings import SlurmSettings

SECTION = "slurm"
RESULT = f"runtime:{SECTION}"
MUNGE_SECRET = "munge.key"
ALL_FILES = (
    "etc/slurm.conf",
    "etc/gres.conf",
    CONTROLLER_PROLOG,
    CONTROLLER_EPILOG,
    WORKER_PROLOG,
    WORKER_EPILOG,
    NODESET_INIT,
    LOGIN_INIT,
)
CONTROLLER = NodeRole.CONTROL_PLANE.value
WORKER = NodeRole.GPU_WORKER.value


def slurm_name(cluster_id: str) -> str:
    """The cluster's Slurm ClusterName (Slurm wants it lower case)."""
    return re.sub(r"[^a-z0-9_-]", "-", cluster_id.lower())[:63] or "cluster"


def _files_patch(files: dict[str, str]) -> dict[str, str | None]:
    """A merge patch that makes a section's files exactly `files` (others deleted)."""
    return {path: files.get(path) for path in ALL_FILES}


def _scripts(cluster_config: dict[str, Any]) -> SlurmStartupScripts:
    raw = cluster_config.get("slurm_startup_scripts") or {}
    known = SlurmStartupScripts.__dataclass_fields__
    return SlurmStartupScripts(**{k: v for k, v in raw.items() if k in known and v})


class AgentSlurmFlavour:
    name = "slurm"

    def __init__(self, port: HostAssignments, settings: SlurmSettings):
        self.port = port
        self.settings = settings

    # -- the cluster's configuration ---------------------------------------------------

    def _spec(
        self, cluster_id: str, peers: list[Peer], config: dict[str, Any], shm: int
    ) -> SlurmClusterSpec:
        controller = _controller(peers)
        if controller is None:
            raise PermanentProviderError(f"cluster {cluster_id} has no controller host")
        s = self.settings
        nodes = tuple(
            SlurmNode(p.node_name, p.address or "0.0.0.0", p.gpu_devices)
            for p in peers
            if p.role == WORKER
        )
        return SlurmClusterSpec(
            name=slurm_name(cluster_id),
            controller_name=controller.node_name,
            controller_address=controller.address,
            shm_size_gib=max(shm, 1),
            nodes=nodes,
            startup_scripts=_scripts(config),
            controller_port=s.controller_port,
            slurmd_port=s.slurmd_port,
            state_dir=f"{s.state_dir}/{slurm_name(cluster_id)}",
            slurm_user=s.slurm_user,
            slurmd_timeout_s=s.slurmd_timeout_seconds,
            max_node_count=s.max_node_count,
        )

    def _render(self, spec: SlurmClusterSpec) -> SlurmFiles:
        try:
            return render_files(spec)
        except InvalidRequest as exc:
            message = f"the cluster's Slurm configuration: {exc.message}"
            raise PermanentProviderError(message) from exc

    def _common(self, spec: SlurmClusterSpec) -> dict[str, Any]:
        return {
            "cluster": spec.name,
            "controller_address": spec.controller_address,
            "controller_port": spec.controller_port,
            "munge_key_secret": MUNGE_SECRET,
            "state_dir": spec.state_dir,
        }

    def _patch(
        self, peer: Peer, cluster_id: str, patch: dict[str, Any], with_key: bool = False
    ) -> int:
        secrets = None
        if with_key:
            secrets = {MUNGE_SECRET: self.port.cluster_secret(cluster_id, "munge") + "\n"}
        generation = self.port.patch_runtime(peer.host_id, cluster_id, SECTION, patch, secrets)
        if generation is None:
            raise PermanentProviderError(f"host of {peer.node_name} no longer serves the cluster")
        return generation

    def _controller_section(self, spec: SlurmClusterSpec, files: SlurmFiles) -> dict[str, Any]:
        return {
            **self._common(spec),
            "role": "controller",
            "slurm_user": spec.slurm_user,
            "files": _files_patch(files.controller),
        }

    def _worker_section(
        self, spec: SlurmClusterSpec, files: SlurmFiles, peer: Peer
    ) -> dict[str, Any]:
        node = SlurmNode(
            peer.node_name,
            peer.address,
            peer.gpu_devices,
            cpus=peer.num_cpu_cores or None,
            memory_mib=int(peer.memory_gib * 1024 * 0.9) or None,
        )
        return {
            **self._common(spec),
            "role": "worker",
            "files": _files_patch(files.worker),
            "node_name": peer.node_name,
            "node_conf": worker_node_conf(node),
            "config_generation": config_generation(files),
            "gpu_devices": list(peer.gpu_devices),
            "shm_size_gib": spec.shm_size_gib,
        }

    # -- bring-up ----------------------------------------------------------------------

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> Progress:
        """The network, volume and driver steps are the hosts' (their agents report them);
        test steps run through the host driver's checks. Nothing is left for Slurm."""
        return Progress(True, {"step": spec.step.value})

    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> Progress:
        return Progress(True, state)

    def join_node(self, spec: InstanceSpec, now: datetime) -> Progress:
        peers = self.port.peers(spec.cluster_id)
        me = next((p for p in peers if p.node_name == spec.node_name), None)
        if me is None:
            raise PermanentProviderError(f"node {spec.node_name} has no host serving it")
        controller = _controller(peers)
        cluster = self._spec(spec.cluster_id, peers, spec.cluster_config, spec.slurm_shm_size_gib)
        files = self._render(cluster)
        if me.role != WORKER:
            generation = self._patch(
                me, spec.cluster_id, self._controller_section(cluster, files), with_key=True
            )
            return _ready(self.port.observe(me.host_id), generation, {"generation": generation})
        assert controller is not None
        others = [p for p in peers if p is not me]
        before = self._render(
            self._spec(spec.cluster_id, others, spec.cluster_config, spec.slurm_shm_size_gib)
        )
        served = self._patch(controller, spec.cluster_id, {"files": _files_patch(files.controller)})
        if config_generation(before) != config_generation(files):
            self._bump_workers(spec.cluster_id, peers, files, skip=me)
        # Not before slurmctld serves this worker's gres.conf: a configless slurmd that
        # fetched the old one registers without its GPUs and Slurm drains it.
        if not _ready(self.port.observe(controller.host_id), served, {}).done:
            return Progress(False, {}, message="waiting for slurmctld to apply its config")
        section = self._worker_section(cluster, files, me)
        generation = self._patch(me, spec.cluster_id, section, with_key=True)
        return _ready(self.port.observe(me.host_id), generation, {"generation": generation})

    def _bump_workers(
        self, cluster_id: str, peers: list[Peer], files: SlurmFiles, skip: Peer | None = None
    ) -> None:
        """Workers fetch changed configless files when their `config_generation` moves."""
        patch = {"config_generation": config_generation(files), "files": _files_patch(files.worker)}
        for peer in peers:
            if peer.role == WORKER and peer is not skip:
                self.port.patch_runtime(peer.host_id, cluster_id, SECTION, patch)

    def remove_node(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        """Drain the node in Slurm, wait for its jobs to end, stop its slurmd (else it
        registers the node again), then delete it from slurmctld."""
        if spec.role != NodeRole.GPU_WORKER:
            return Progress(True, state)
        peers = self.port.peers(spec.cluster_id)
        controller = _controller(peers)
        if controller is None:
            return Progress(True, state, message="no controller: nothing to remove from")
        name = spec.node_name
        self._patch(controller, spec.cluster_id, {"drain": {name: f"{PREFIX} leaving the cluster"}})
        seen = self.port.observe(controller.host_id)
        if seen is None or seen.generation_applied < seen.generation_published:
            # A view from before the controller applied the drain (or a removal) says
            # nothing about the node: absent from it, the node may still be there.
            return Progress(False, state, message="waiting for the controller's agent")
        view = _nodes(seen)
        node = None if view is None else view.get(name)
        if view is None or (node is not None and not _drained(node)):
            state_now = (node or {}).get("state", "unknown")
            return Progress(False, state, message=f"{name} is {state_now} in Slurm")
        waiting = self._stop_worker(spec, peers)
        if node is not None and node.get("state") == "drained" and waiting is not None:
            # Its slurmd still answers slurmctld (a down or silent one cannot register
            # again): deleted now, it would be back at its agent's next pass.
            return Progress(False, state, message=waiting)
        self._patch(controller, spec.cluster_id, {"remove": {name: True}})
        if node is not None:
            return Progress(False, state, message=f"{name} is {node.get('state')} in Slurm")
        # Deleted. The entries stay while its host may still run its slurmd (a host cut
        # off keeps it running, and it registers again when the link is back: the
        # controller then drains and deletes it again); `_forget_removed` drops them
        # once no host serves the node any more.
        self._forget_removed(spec.cluster_id, controller, peers, seen)
        return Progress(True, state)

    def _forget_removed(
        self, cluster_id: str, controller: Peer, peers: list[Peer], seen: Observation
    ) -> None:
        result = seen.sections.get(RESULT)
        removed = result.details.get("removed") if result is not None else None
        serving = {p.node_name for p in peers}
        gone = [n for n in removed or [] if isinstance(n, str) and n not in serving]
        if gone:
            patch = {"drain": dict.fromkeys(gone), "remove": dict.fromkeys(gone)}
            self.port.patch_runtime(controller.host_id, cluster_id, SECTION, patch)

    def _stop_worker(self, spec: InstanceSpec, peers: list[Peer]) -> str | None:
        """Take the worker's `slurm` section away; None once its agent stopped Slurm there
        (or its host left the cluster), else what that waits for."""
        me = next((p for p in peers if p.node_name == spec.node_name), None)
        if me is None:
            return None
        generation = self.port.patch_runtime(me.host_id, spec.cluster_id, SECTION, None)
        seen = self.port.observe(me.host_id)
        if generation is None or seen is None:
            return None
        result = seen.sections.get(RESULT)
        if seen.generation_applied < generation:
            return f"waiting for {spec.node_name}'s agent to stop slurmd"
        if result is not None and not result.ok:
            return f"{spec.node_name}'s slurmd: {result.message}"
        return None

    def apply_config(self, spec: ClusterConfigSpec, now: datetime) -> Progress:
        """New startup scripts (and the slurm.conf lines they set) on every host."""
        peers = self.port.peers(spec.cluster_id)
        controller = _controller(peers)
        if controller is None:
            return Progress(False, {}, message="waiting for the controller host")
        cluster = self._spec(spec.cluster_id, peers, spec.cluster_config, spec.slurm_shm_size_gib)
        files = self._render(cluster)
        generation = self._patch(
            controller, spec.cluster_id, {"files": _files_patch(files.controller)}
        )
        self._bump_workers(spec.cluster_id, peers, files)
        ignored = sorted(a["name"] for a in spec.add_ons)
        note = f"add-ons not run on agent hosts: {', '.join(ignored)}" if ignored else ""
        progress = _ready(
            self.port.observe(controller.host_id), generation, {"generation": generation}
        )
        return Progress(progress.done, progress.state, progress.failed, progress.message or note)

    # -- drains ------------------------------------------------------------------------

    def drain(self, spec: DrainSpec, state: DriverState | None, now: datetime) -> DrainProgress:
        controller = self._controller_of(spec.cluster_id)
        reason = drain_reasons.reason_for(spec)
        drains = {name: reason for name in spec.node_names}
        self._patch(controller, spec.cluster_id, {"drain": drains})
        return self.is_drained(spec, {"reason": reason}, now)

    def undrain(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        controller = self._controller_of(spec.cluster_id)
        progress = self.is_drained(spec, state, now)
        if progress.drained_by not in (None, spec.drained_by):
            message = f"drained by {progress.drained_by}; left drained"
            return DrainProgress(False, state, message=message, drained_by=progress.drained_by)
        self._patch(controller, spec.cluster_id, {"drain": {n: None for n in spec.node_names}})
        view = _nodes(self.port.observe(controller.host_id)) or {}
        still = [n for n in spec.node_names if view.get(n, {}).get("drain")]
        return DrainProgress(not still, state, message=f"still drained: {still}" if still else "")

    def is_drained(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        """Drained once Slurm runs nothing on the nodes; `drained_by` from the reason."""
        view = _nodes(self.port.observe(self._controller_of(spec.cluster_id).host_id))
        if view is None:
            return DrainProgress(False, state, message="no word from the controller yet")
        done, drained_by = True, None
        for name in spec.node_names:
            node = view.get(name)
            if node is None:
                continue  # not (or no longer) in Slurm: nothing runs there
            if not node.get("drain"):
                return DrainProgress(False, state, message=f"{name} is {node.get('state')}")
            drained_by = _drained_by(str(node.get("reason", "")))
            done = done and _drained(node)
        return DrainProgress(done, state, drained_by=drained_by)

    def _controller_of(self, cluster_id: str) -> Peer:
        controller = _controller(self.port.peers(cluster_id))
        if controller is None:
            raise PermanentProviderError(f"cluster {cluster_id} has no controller host")
        return controller


def _drained_by(reason: str) -> str:
    """Who drained a node, from its reason in Slurm (`drain_reasons.reason_for`)."""
    if not reason.startswith(PREFIX):
        return f"slurm: {reason}"
    return drain_reasons.owner(reason)


def _drained(node: dict[str, Any]) -> bool:
    """Drained and running nothing, as the controller's agent reports a node."""
    return bool(node.get("drain")) and node.get("state") in ("drained", "down", "not_responding")


def _controller(peers: list[Peer]) -> Peer | None:
    return next((p for p in peers if p.role == CONTROLLER), None)


def _ready(seen: Observation | None, generation: int, state: DriverState) -> Progress:
    """Done once the host applied `generation` and its Slurm section reports ready."""
    if seen is None:
        raise PermanentProviderError("the host has no node agent")
    result = seen.sections.get(RESULT)
    if seen.generation_applied < generation or result is None:
        return Progress(False, state, message="the host's agent has not applied it yet")
    if not result.ok:
        return Progress(False, state, failed=True, message=f"slurm: {result.message}")
    phase = result.details.get("phase")
    return Progress(phase == "ready", state, message="" if phase == "ready" else f"slurm {phase}")


def _nodes(seen: Observation | None) -> dict[str, dict[str, Any]] | None:
    """Slurm's view of the nodes as the controller's agent last reported it."""
    if seen is None:
        return None
    result = seen.sections.get(RESULT)
    nodes = result.details.get("nodes") if result is not None else None
    return nodes if isinstance(nodes, dict) else None
