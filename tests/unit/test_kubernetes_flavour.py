"""The Kubernetes flavour's own decisions, and the runtime's refusal of foreign binaries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from clusterplane.agent.kubernetes.runtime import KubernetesRuntime
from clusterplane.agent.kubernetes.section import parse_section
from clusterplane.agent.slurm.host import LocalHost
from clusterplane.domain.enums import NodeRole
from clusterplane.providers.agent_port import Peer
from clusterplane.providers.kubernetes import AgentKubernetesFlavour, cluster_name
from clusterplane.providers.models import InstanceSpec
from clusterplane.services.clusters.credentials import issue_cluster_credentials
from clusterplane.settings import KubernetesSettings
from tests.unit.test_kubernetes_section import worker

CREDS = issue_cluster_credentials(cluster_id="c-1", now=datetime(2026, 1, 1, tzinfo=UTC))


class SecretsOnlyPort:
    """The two port verbs a node's pair needs: the CA, and secrets made once."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.made = 0

    def cluster_ca(self, cluster_id: str) -> tuple[str, str]:
        return CREDS.ca_cert_pem, CREDS.ca_key_pem

    def cluster_secret(self, cluster_id: str, name: str, make: Any = None) -> str:
        if name not in self.secrets:
            self.made += 1
            self.secrets[name] = make()
        return self.secrets[name]


def flavour(port: object = None, **settings: Any) -> AgentKubernetesFlavour:
    return AgentKubernetesFlavour(port, KubernetesSettings(**settings))  # type: ignore[arg-type]


def test_each_worker_of_a_host_network_gets_its_own_pod_subnet_from_its_address() -> None:
    cidrs = {flavour().pod_cidr(f"127.1.3.{n}") for n in range(11, 60)}

    assert len(cidrs) == 49
    assert flavour().pod_cidr("127.1.3.12") == "127.64.12.0/24"
    assert flavour(pod_network="127.80.0.0/20").pod_cidr("10.0.0.18") == "127.80.2.0/24"


def test_a_cluster_id_becomes_a_dns_label() -> None:
    assert cluster_name("4C06ABA2-436f_x") == "4c06aba2-436f-x"
    assert cluster_name("--") == "cluster"


def test_a_workers_node_pair_is_issued_once_and_names_the_node() -> None:
    port = SecretsOnlyPort()
    first = flavour(port)._node_pair("c-1", "gpu-a-0")
    again = flavour(port)._node_pair("c-1", "gpu-a-0")

    assert first == again and port.made == 1
    cert = x509.load_pem_x509_certificate(first[0].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(CREDS.ca_cert_pem.encode()))
    assert cert.subject.rfc4514_string() == "CN=system:node:gpu-a-0,O=system:nodes"


def test_the_runtime_refuses_kubernetes_programs_of_another_version(tmp_path: Path) -> None:
    programs = {}
    for name, answer in (("kubelet", "Kubernetes v1.19.16"), ("containerd", ""), ("ctr", "")):
        program = tmp_path / name
        program.write_text(f"#!/bin/sh\necho '{answer}'\n")
        program.chmod(0o755)
        programs[name] = str(program)
    runtime = KubernetesRuntime(LocalHost(tmp_path / "state"), str(tmp_path / "k8s"), programs)

    report = runtime.converge(worker(version="v1.20.2"))

    assert report["ok"] is False
    assert "reports 'Kubernetes v1.19.16', not Kubernetes v1.20.2" in report["message"]
    assert not (tmp_path / "k8s").exists()  # nothing was written or started


def test_the_clusters_oidc_config_reaches_the_control_planes_section_as_it_parses() -> None:
    oidc = {
        "issuer_url": "https://issuer.example",
        "client_id": "kube",
        "username_claim": "email",
        "username_prefix": "oidc:",
        "group_claim": "groups",
        "group_prefix": "oidc:",
        "ca_cert": None,
    }
    spec = InstanceSpec(
        instance_id="i-1", cluster_id="C-1", role=NodeRole.CONTROL_PLANE, node_name="cp-c-0",
        host_name="ctl", region="r", gpu_type="H100_SXM", num_gpus=0, image="ubuntu-22.04",
        oidc_config=oidc,
    )  # fmt: skip
    me = Peer("h-1", "cp-c-0", NodeRole.CONTROL_PLANE.value, "127.1.0.11")
    worker_peer = Peer("h-2", "gpu-c-0", NodeRole.GPU_WORKER.value, "127.1.0.12")

    section = flavour(version="v1.20.2")._control_section(spec, me, [me, worker_peer])

    assert section["oidc"] == {k: v for k, v in oidc.items() if v is not None}
    assert section["pod_routes"] == {"127.64.12.0/24": "127.1.0.12"}
    raw = {k: v for k, v in section.items() if not k.endswith("_secret")}
    parsed = parse_section({**raw, "ca_cert": CREDS.ca_cert_pem, "ca_key": CREDS.ca_key_pem})
    assert parsed.oidc is not None and parsed.oidc.username_claim == "email"
    assert (parsed.cluster, parsed.version) == ("c-1", "v1.20.2")
