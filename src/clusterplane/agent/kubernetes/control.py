"""A cluster's Kubernetes control plane on this host: etcd, API server, scheduler, controllers.

`ControlPlane(host, layout, record, programs).converge(section, messages)` writes the
cluster CA (from the assignment's secrets) and issues with it, once, every certificate the
control plane needs: the API server's serving pair (the host address, the first Service
IP, the cluster names and `api_server_names`), its kubelet client pair, the scheduler's
and controller-manager's client pairs, and the agent's own (`clusterplane-agent`, group
system:masters), plus the service account signing key. A new CA or new serving names
issue them again and restart the API server, the scheduler and the controller-manager
(a credential rotation; etcd holds no certificate, the service account key stays, so
pods' tokens stay valid). It runs etcd and the API server (restarted when its flags change, for
example the OIDC settings), waits for `/readyz`, then runs the scheduler and the
controller-manager; the phase is "ready" once the API server answers ready. `api()` is a
client of the API server as the agent; `teardown()` stops the four daemons and restores
the network.
"""

from __future__ import annotations

import hashlib
import time

from clusterplane.agent.kubernetes import config
from clusterplane.agent.kubernetes.api import KubeApi
from clusterplane.agent.kubernetes.daemons import Daemons, Record
from clusterplane.agent.kubernetes.host import HostError, HostKit
from clusterplane.agent.kubernetes.network import Network
from clusterplane.agent.kubernetes.pki import issue, kubeconfig, public_key_pem, service_account_key
from clusterplane.agent.kubernetes.section import KubernetesSection
from clusterplane.agent.slurm.host import SlurmHost as Host

READY_TIMEOUT = 90.0
AGENT_USER = "clusterplane-agent"
# name -> (user, groups); serving pairs are issued separately.
CLIENTS = {
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
    "kube-scheduler": ("system:kube-scheduler", ()),
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "agent": (AGENT_USER, ("system:masters",)),
}


class ControlPlane:
    def __init__(self, host: Host, layout: config.Layout, record: Record, programs: dict[str, str]):
        self.host = host
        self.kit = HostKit(host)
        self.layout = layout
        self.record = record
        self.programs = programs
        self.daemons = Daemons(host, record, layout.log)
        self.network = Network(self.kit, record)

    def converge(self, section: KubernetesSection, messages: list[str]) -> str:
        if self._issue_certificates(section):
            messages.append("issued the control plane's certificates")
        if section.oidc is not None and section.oidc.ca_cert:
            self.kit.write(self.layout.path("pki", "oidc-ca.crt"), section.oidc.ca_cert)
        self.network.prepare(section, forward=False)
        for directory in ("log", "etcd"):
            self.kit.mkdir(self.layout.path(directory), 0o700)
        programs, layout = self.programs, self.layout
        if self.daemons.ensure("etcd", config.etcd_argv(section, layout, programs["etcd"]), {}):
            messages.append("etcd started")
        api_argv = config.api_server_argv(section, layout, programs["kube-apiserver"])
        if self.daemons.ensure("kube-apiserver", api_argv, {}):
            messages.append("kube-apiserver started")
        if not self._wait_ready(section):
            return "starting"
        scheduler = config.scheduler_argv(layout, programs["kube-scheduler"])
        if self.daemons.ensure("kube-scheduler", scheduler, {}):
            messages.append("kube-scheduler started")
        manager = config.controller_manager_argv(
            section, layout, programs["kube-controller-manager"]
        )
        if self.daemons.ensure("kube-controller-manager", manager, {}):
            messages.append("kube-controller-manager started")
        return "ready"

    def api(self, section: KubernetesSection) -> KubeApi:
        reach = self.host.path
        return KubeApi(
            config.api_server_url(section),
            str(reach(self.layout.cert("ca"))),
            str(reach(self.layout.cert("agent"))),
            str(reach(self.layout.key("agent"))),
        )

    def _wait_ready(self, section: KubernetesSection) -> bool:
        api = self.api(section)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not api.ready():
                if not self.daemons.running("kube-apiserver") or not self.daemons.running("etcd"):
                    raise HostError(f"the API server stopped; see {self.layout.log}")
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.2)
            return True
        finally:
            api.close()

    def _issue_certificates(self, section: KubernetesSection) -> bool:
        assert section.ca_key is not None
        layout, kit = self.layout, self.kit
        names = config.serving_names(section)
        fingerprint = hashlib.sha256(
            "\n".join([section.ca_cert, section.ca_key, *names]).encode()
        ).hexdigest()
        before = self.record.get("pki")
        if before == fingerprint and self.host.path(layout.key("sa")).exists():
            return False
        ca = (section.ca_cert, section.ca_key)
        kit.write(layout.cert("ca"), section.ca_cert)
        kit.write(layout.key("ca"), section.ca_key, 0o600)
        pairs = {"apiserver": issue(*ca, "kube-apiserver", sans=names)}
        for name, (user, groups) in CLIENTS.items():
            pairs[name] = issue(*ca, user, groups=groups)
        for name, pair in pairs.items():
            kit.write(layout.cert(name), pair.cert_pem)
            kit.write(layout.key(name), pair.key_pem, 0o600)
        local = f"https://{section.address}:{section.api_port}"
        for name in ("kube-scheduler", "kube-controller-manager", "agent"):
            kit.write(
                layout.kubeconfig(name), kubeconfig(local, section.ca_cert, pairs[name]), 0o600
            )
        if not self.host.path(layout.key("sa")).exists():
            signing = service_account_key()
            kit.write(layout.key("sa"), signing, 0o600)
            kit.write(layout.path("pki", "sa.pub"), public_key_pem(signing))
        if before is not None:  # a new CA or names: the daemons load the new pairs
            self.daemons.stop("kube-controller-manager", "kube-scheduler", "kube-apiserver")
        self.record.set("pki", fingerprint)
        return True

    def teardown(self) -> None:
        self.daemons.stop("kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd")
        self.network.restore()
