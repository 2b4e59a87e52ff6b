"""The `kubernetes` section of an assignment: what the runtime accepts, refuses, renders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterplane.agent.kubernetes import config
from clusterplane.agent.kubernetes.pki import issue, node_user
from clusterplane.agent.kubernetes.section import SectionError, parse_section
from clusterplane.services.clusters.credentials import issue_cluster_credentials

CREDS = issue_cluster_credentials(cluster_id="c-1", now=datetime(2026, 1, 1, tzinfo=UTC))
NODE = issue(CREDS.ca_cert_pem, CREDS.ca_key_pem, node_user("w1"), groups=("system:nodes",))


def control_plane(**overrides: Any) -> dict[str, Any]:
    return {
        "role": "control_plane",
        "cluster": "lab",
        "address": "127.1.0.11",
        "ca_cert": CREDS.ca_cert_pem,
        "ca_key": CREDS.ca_key_pem,
        **overrides,
    }


def worker(**overrides: Any) -> dict[str, Any]:
    return {
        "role": "worker",
        "cluster": "lab",
        "address": "127.1.0.12",
        "ca_cert": CREDS.ca_cert_pem,
        "api_server": "https://127.1.0.11:6443",
        "node_name": "w1",
        "node_cert": NODE.cert_pem,
        "node_key": NODE.key_pem,
        "pod_cidr": "127.2.0.16/28",
        "gpus": [{"id": "GPU-0", "device": "/dev/nvidia0"}],
        **overrides,
    }


def test_a_worker_section_parses_with_its_defaults() -> None:
    section = parse_section(worker())

    assert (section.node_name, section.gpu_resource, section.node_status_seconds) == (
        "w1",
        "nvidia.com/gpu",
        10,
    )
    assert section.gpus[0].device == "/dev/nvidia0"
    assert section.identity == ("lab", "worker", "w1")
    assert section.node_grace_seconds == 40


def test_a_workers_grace_period_is_its_own_kubelet_probes() -> None:
    assert parse_section(worker(node_grace_seconds=8)).node_grace_seconds == 8


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (worker(extra=1), "unknown keys"),
        (worker(role="boss"), "role must be one of"),
        (worker(ca_key=CREDS.ca_key_pem), "a worker takes no \\['ca_key'\\]"),
        (worker(pod_cidr="10.0.0.0/24"), "inside 127.0.0.0/8"),
        (worker(node_key="not a key"), "node_key must be PEM"),
        (worker(api_server="http://127.1.0.11:6443"), "https://HOST:PORT"),
        (worker(gpus=[{"id": "a", "device": "/dev/../etc/passwd"}]), "plain absolute path"),
        (worker(gpus=[{"id": "a", "device": "/dev/x"}] * 2), "unique"),
        (worker(node_name="W_1"), "node_name is not valid"),
        (worker(binaries={"bash": "/bin/bash"}), "binaries must map"),
        (control_plane(node_name="w1"), "a control plane takes no"),
        (control_plane(cordon={"w1": "maintenance"}), "starting 'clusterplane:'"),
        (control_plane(remove={"w1": "later"}), 'true or "force"'),
        (control_plane(oidc={"issuer_url": "http://x"}), "oidc.client_id"),
        (control_plane(api_port=0), "api_port"),
        (control_plane(address="api.example.com"), "IPv4 address"),
    ],
)
def test_a_malformed_section_is_refused_with_the_reason(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SectionError, match=message):
        parse_section(raw)


def test_the_api_server_gets_the_clusters_oidc_settings_as_flags() -> None:
    oidc = {
        "issuer_url": "https://issuer.example",
        "client_id": "kube",
        "username_claim": "email",
        "username_prefix": "oidc:",
        "group_claim": "groups",
        "group_prefix": "oidc:",
        "ca_cert": CREDS.ca_cert_pem,
    }
    section = parse_section(control_plane(oidc=oidc))

    argv = config.api_server_argv(section, config.Layout("/k"), "kube-apiserver")

    assert "--oidc-issuer-url=https://issuer.example" in argv
    assert "--oidc-username-claim=email" in argv
    assert "--oidc-groups-claim=groups" in argv
    assert "--oidc-ca-file=/k/pki/oidc-ca.crt" in argv
    assert "--endpoint-reconciler-type=none" in argv  # a loopback address
    assert "--enable-admission-plugins=NodeRestriction" in argv


def test_a_node_certificate_names_the_node_and_is_signed_by_the_cluster_ca() -> None:
    cert = x509.load_pem_x509_certificate(NODE.cert_pem.encode())
    ca = x509.load_pem_x509_certificate(CREDS.ca_cert_pem.encode())

    cert.verify_directly_issued_by(ca)
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {
        NameOID.COMMON_NAME: "system:node:w1",
        NameOID.ORGANIZATION_NAME: "system:nodes",
    }
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_kubelet_runs_with_its_node_ip_and_its_own_cgroup_root() -> None:
    section = parse_section(worker(node_labels={"clusterplane.io/cluster": "lab"}))

    argv = config.kubelet_argv(section, config.Layout("/k"), "/bin/kubelet")
    kubelet = config.kubelet_config(section, config.Layout("/k"))

    assert "--node-ip=127.1.0.12" in argv and "--hostname-override=w1" in argv
    assert "--node-labels=clusterplane.io/cluster=lab,clusterplane.io/node=w1" in argv
    assert '"cgroupRoot": "/clusterplane-w1"' in kubelet
    assert '"healthzBindAddress": "127.1.0.12"' in kubelet and '"healthzPort": 10248' in kubelet
    assert '"makeIPTablesUtilChains": false' in kubelet
