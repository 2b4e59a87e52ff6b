"""Conformance: the official `together` CLI (3.1.1) as a subprocess against a real server.

The CLI is run the way a user on a wide terminal would run it: `TOGETHER_BASE_URL` and
`TOGETHER_API_KEY` set, no project (so it asks `GET /v3/whoami` first), no stored login,
none of the variables that make it think an AI agent is driving it (those switch it to
JSON output), and `CI=1` as in a CI job (so it installs no shell completion). `--json` or
`--no-json`, and `--non-interactive`, are always explicit.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, get_args

import pytest
import together
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from together.types.cluster import Cluster
from together.types.clusters.remediation import Remediation

from tests.compat.support import (
    H100_DRIVER_ID,
    H100_REGION,
    L40_DRIVER_ID,
    L40_REGION,
    create_h100_cluster,
    is_ready,
    wait_for_cluster,
    wait_until,
)
from tests.support.cli import Tg, cli_env, kubectl_program
from tests.support.server import ServerProcess

pytestmark = pytest.mark.compat

MANUAL_STATES = sorted(
    set(get_args(Remediation.model_fields["state"].annotation)) - {"PENDING_APPROVAL"}
)


@pytest.fixture(scope="module")
def tg(module_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Tg:
    home = tmp_path_factory.mktemp("cli-home")
    return Tg(env=cli_env(module_server, home), cwd=home)


@pytest.fixture(scope="module")
def client(module_server: ServerProcess) -> Iterator[together.Together]:
    """The SDK, to set up and to check what the CLI did through a second client."""
    with together.Together(base_url=module_server.base_url, api_key=module_server.api_key) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def early_cluster_ids(client: together.Together) -> Iterator[tuple[str, str]]:
    """Two clusters, 16 GPUs (two workers) and 8 GPUs, created as the module starts so
    that they come up while the first tests run."""
    first = create_h100_cluster(client, "cli-alpha", 16)
    second = create_h100_cluster(client, "cli-beta", 8)
    yield first.cluster_id, second.cluster_id
    client.clusters.delete(first.cluster_id)
    client.clusters.delete(second.cluster_id)


@pytest.fixture(scope="module")
def ready_clusters(
    client: together.Together, early_cluster_ids: tuple[str, str]
) -> tuple[Cluster, Cluster]:
    first, second = early_cluster_ids
    return (
        wait_for_cluster(client, first, is_ready, what="cli-alpha to be Ready"),
        wait_for_cluster(client, second, is_ready, what="cli-beta to be Ready"),
    )


@pytest.fixture(scope="module")
def read_only(tg: Tg) -> dict[str, subprocess.CompletedProcess[str]]:
    """Commands that change nothing, run side by side once for the tests that read them."""
    commands = {
        "whoami": ("whoami", "--json"),
        "list-regions": ("clusters", "list-regions", "--no-json"),
        "unknown-cluster": ("clusters", "retrieve", "no-such-cluster", "--no-json"),
        "unknown-remediation": (
            "clusters", "remediations", "retrieve", "no-such-remediation", "--no-json",
        ),
    }  # fmt: skip
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        runs = pool.map(lambda args: tg(*args, exit_code=None), commands.values())
        return dict(zip(commands, runs, strict=True))


def deleted_or_deleting(client: together.Together, cluster_id: str) -> bool:
    try:
        return client.clusters.retrieve(cluster_id).status == "Deleting"
    except together.NotFoundError:
        return True


def volume_deleted_or_deleting(client: together.Together, volume_id: str) -> bool:
    try:
        return client.clusters.storage.retrieve(volume_id).status == "deleting"
    except together.NotFoundError:
        return True


# --- identity and catalog --------------------------------------------------------------


def test_whoami_reports_the_project_of_the_api_key(
    read_only: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = read_only["whoami"]
    assert run.returncode == 0, run.stdout

    me = json.loads(run.stdout)

    assert me["type"] == "project_api_key"
    assert me["project"]["id"] == "proj_default"
    assert me["api_key"]["id"]


def test_list_regions_prints_a_row_per_driver_version(
    read_only: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = read_only["list-regions"]
    assert run.returncode == 0, run.stdout

    for expected in (H100_DRIVER_ID, L40_DRIVER_ID, H100_REGION, L40_REGION, "H100_SXM"):
        assert expected in run.stdout
    assert "L40_PCIE" in run.stdout
    assert "ubuntu-22.04" in run.stdout


def test_an_unknown_cluster_exits_1_and_prints_the_servers_error_message(
    read_only: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = read_only["unknown-cluster"]

    assert run.returncode == 1
    assert "Error" in run.stdout
    assert "cluster 'no-such-cluster' not found" in run.stdout
    assert "Traceback" not in run.stderr


def test_remediation_retrieve_of_an_unknown_id_exits_1(
    read_only: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = read_only["unknown-remediation"]

    assert run.returncode == 1
    assert "Remediation not found: no-such-remediation" in run.stdout
    assert "Traceback" not in run.stderr


# --- clusters --------------------------------------------------------------------------


def test_cluster_create_list_retrieve_update_and_delete(tg: Tg, client: together.Together) -> None:
    created = tg.json(
        "clusters", "create",
        "--name", "cli-main",
        "--num-gpus", "8",
        "--region", H100_REGION,
        "--billing-type", "ON_DEMAND",
        "--gpu-type", "H100_SXM",
        "--nvidia-version-id", H100_DRIVER_ID,
        "--cluster-type", "KUBERNETES",
        "--install-traefik",
        "--headlamp-addon",
    )  # fmt: skip
    cid = created["cluster_id"]
    assert created["cluster_name"] == "cli-main"
    assert (created["num_gpus"], created["billing_type"]) == (8, "ON_DEMAND")
    assert created["nvidia_driver_version_id"] == H100_DRIVER_ID
    assert created["install_traefik"] is True
    assert [a["add_on_type"] for a in created["add_ons"]] == ["headlamp"]

    table, retrieved = tg.side_by_side(
        ("clusters", "list", "--no-json"), ("clusters", "retrieve", cid, "--json")
    )
    assert cid in table
    assert "cli-main" in table
    assert (json.loads(retrieved)["cluster_id"], json.loads(retrieved)["cluster_name"]) == (
        cid,
        "cli-main",
    )

    scaled_up = tg.json("clusters", "update", cid, "--num-gpus", "16")
    assert (scaled_up["cluster_id"], scaled_up["num_gpus"]) == (cid, 16)
    assert "Cluster updated successfully" in tg.text("clusters", "update", cid, "--num-gpus", "8")
    assert client.clusters.retrieve(cid).num_gpus == 8

    assert f"Deleted cluster ({cid})" in tg.text("clusters", "delete", cid, "--force")
    assert deleted_or_deleting(client, cid)


def test_cluster_create_with_driver_cuda_and_os_flags_for_a_reserved_slurm_cluster(
    tg: Tg, client: together.Together
) -> None:
    out = tg.text(
        "clusters", "create",
        "--name", "cli-slurm",
        "--num-gpus", "8",
        "--region", L40_REGION,
        "--billing-type", "RESERVED",
        "--duration-days", "2",
        "--gpu-type", "L40_PCIE",
        "--nvidia-driver-version", "560",
        "--cuda-version", "12.6",
        "--os", "ubuntu-22.04",
        "--cluster-type", "SLURM",
        "--slurm-shm-size-gib", "64",
        "--slurm-web-addon",
    )  # fmt: skip

    assert "Cluster created successfully" in out
    match = re.search(r"Clusters: ([A-Za-z0-9-]+)\s*$", out)
    assert match, out
    cluster = client.clusters.retrieve(match.group(1))
    assert (cluster.cluster_name, cluster.cluster_type) == ("cli-slurm", "SLURM")
    assert cluster.nvidia_driver_version_id == L40_DRIVER_ID
    assert (cluster.billing_type, cluster.duration_hours) == ("RESERVED", 48)
    assert cluster.num_reserved_gpus == 8
    assert cluster.slurm_shm_size_gib == 64
    assert [a.add_on_type for a in cluster.add_ons] == ["slurm_web"]

    assert tg.json("clusters", "delete", cluster.cluster_id) == {"cluster_id": cluster.cluster_id}
    assert deleted_or_deleting(client, cluster.cluster_id)


# --- credentials -----------------------------------------------------------------------


def test_get_credentials_writes_a_private_kubeconfig_with_a_context_per_cluster(
    tg: Tg, ready_clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    alpha, beta = ready_clusters
    path = tmp_path / "kube" / "config"

    out = tg.text("clusters", "get-credentials", alpha.cluster_id, "--file", str(path))

    assert f"Kubeconfig written to {path}" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    (context,) = config["contexts"]
    assert context["name"] == "cli-alpha"
    assert context["context"]["cluster"] == "cli-alpha"
    assert context["context"]["user"] == f"{alpha.cluster_id}-admin"
    assert [c["name"] for c in config["clusters"]] == ["cli-alpha"]
    assert [u["name"] for u in config["users"]] == [f"{alpha.cluster_id}-admin"]

    # A second cluster merges in beside the first: user names are unique per cluster.
    tg.text(
        "clusters", "get-credentials", beta.cluster_id, "--file", str(path),
        "--set-default-context",
    )  # fmt: skip

    merged = yaml.safe_load(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    contexts = {c["name"]: c["context"] for c in merged["contexts"]}
    assert contexts == {
        "cli-alpha": {"cluster": "cli-alpha", "user": f"{alpha.cluster_id}-admin"},
        "cli-beta": {"cluster": "cli-beta", "user": f"{beta.cluster_id}-admin"},
    }
    assert sorted(u["name"] for u in merged["users"]) == sorted(
        [f"{alpha.cluster_id}-admin", f"{beta.cluster_id}-admin"]
    )
    assert merged["current-context"] == "cli-beta"


def test_get_credentials_to_stdout_prints_the_clusters_kubeconfig_yaml(
    tg: Tg, ready_clusters: tuple[Cluster, Cluster]
) -> None:
    alpha = ready_clusters[0]
    expected = base64.b64decode(alpha.kube_config, validate=True).decode()

    printed, as_json = tg.side_by_side(
        ("clusters", "get-credentials", alpha.cluster_id, "--file", "-", "--no-json"),
        ("clusters", "get-credentials", alpha.cluster_id, "--file", "-", "--json"),
    )

    assert yaml.safe_load(printed) == yaml.safe_load(expected)
    assert json.loads(as_json) == {"kubeconfig": expected}
    assert yaml.safe_load(expected)["users"][0]["name"] == f"{alpha.cluster_id}-admin"


# --- storage ---------------------------------------------------------------------------


def test_storage_create_list_retrieve_update_and_delete(tg: Tg, client: together.Together) -> None:
    created = tg.json(
        "clusters", "storage", "create",
        "--region", H100_REGION,
        "--size-tib", "2",
        "--volume-name", "cli-volume",
    )  # fmt: skip
    vid = created["volume_id"]
    assert (created["volume_name"], created["size_tib"]) == ("cli-volume", 2)

    table, shown = tg.side_by_side(
        ("clusters", "storage", "list", "--no-json"),
        ("clusters", "storage", "retrieve", vid, "--no-json"),
    )
    assert vid in table
    assert "2 TiB" in table
    assert "cli-volume" in shown
    assert vid in shown
    assert "2tb" in shown

    assert tg.json("clusters", "storage", "update", vid, "--size-tib", "3")["size_tib"] == 3
    assert client.clusters.storage.retrieve(vid).size_tib == 3

    assert f"Deleted. ({vid})" in tg.text("clusters", "storage", "delete", vid, "--force")
    assert volume_deleted_or_deleting(client, vid)


def test_storage_update_that_shrinks_exits_1_and_keeps_the_size(
    tg: Tg, client: together.Together
) -> None:
    volume = client.clusters.storage.create(
        region=H100_REGION, size_tib=3, volume_name="cli-no-shrink"
    )

    run = tg("clusters", "storage", "update", volume.volume_id, "--size-tib", "1", exit_code=1)

    assert "volumes can only grow" in run.stdout
    assert client.clusters.storage.retrieve(volume.volume_id).size_tib == 3
    client.clusters.storage.delete(volume.volume_id)


def test_cluster_create_with_volume_attaches_it_and_storage_delete_is_refused_meanwhile(
    tg: Tg, client: together.Together
) -> None:
    volume = client.clusters.storage.create(
        region=H100_REGION, size_tib=1, volume_name="cli-attached"
    )
    created = tg.json(
        "clusters", "create",
        "--name", "cli-with-volume",
        "--num-gpus", "8",
        "--region", H100_REGION,
        "--billing-type", "ON_DEMAND",
        "--gpu-type", "H100_SXM",
        "--nvidia-version-id", H100_DRIVER_ID,
        "--volume", volume.volume_id,
    )  # fmt: skip
    assert [v["volume_id"] for v in created["volumes"]] == [volume.volume_id]

    run = tg("clusters", "storage", "delete", volume.volume_id, "--force", exit_code=1)

    assert "is attached to cluster" in run.stdout
    assert client.clusters.storage.retrieve(volume.volume_id).volume_id == volume.volume_id
    tg.text("clusters", "delete", created["cluster_id"], "--force")
    wait_until(
        lambda: (
            created["cluster_id"] not in {c.cluster_id for c in client.clusters.list().clusters}
        ),
        what="the cluster to be deleted",
    )
    assert f"Deleted. ({volume.volume_id})" in tg.text(
        "clusters", "storage", "delete", volume.volume_id, "--force"
    )


# --- kubectl reads what get-credentials writes -----------------------------------------


def _kubectl_view(path: Path) -> dict[str, Any]:
    kubectl = kubectl_program()
    run = subprocess.run(
        [kubectl, "config", "view", "--kubeconfig", str(path), "--raw", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(path)},
    )
    assert run.returncode == 0, run.stderr
    view: dict[str, Any] = json.loads(run.stdout)
    return view


def test_kubectl_reads_the_kubeconfig_get_credentials_writes_and_its_ca_signed_the_client(
    tg: Tg, ready_clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    alpha = ready_clusters[0]
    path = tmp_path / "kubeconfig"
    tg.text("clusters", "get-credentials", alpha.cluster_id, "--file", str(path))

    view = _kubectl_view(path)

    assert view["current-context"] == "cli-alpha"
    (cluster,) = view["clusters"]
    (user,) = view["users"]
    assert cluster["cluster"]["server"].startswith(f"https://api.{alpha.cluster_id}.")
    ca = x509.load_pem_x509_certificate(
        base64.b64decode(cluster["cluster"]["certificate-authority-data"])
    )
    client_cert = x509.load_pem_x509_certificate(
        base64.b64decode(user["user"]["client-certificate-data"])
    )
    client_key = serialization.load_pem_private_key(
        base64.b64decode(user["user"]["client-key-data"]), password=None
    )
    client_cert.verify_directly_issued_by(ca)
    assert client_cert.public_key() == client_key.public_key()
    assert ca.subject.rfc4514_string() == f"CN=clusterplane-ca-{alpha.cluster_id}"
    other_ca = x509.load_pem_x509_certificate(
        base64.b64decode(
            yaml.safe_load(base64.b64decode(ready_clusters[1].kube_config))["clusters"][0][
                "cluster"
            ]["certificate-authority-data"]
        )
    )
    with pytest.raises((ValueError, InvalidSignature)):
        client_cert.verify_directly_issued_by(other_ca)


def test_kubectl_reads_an_oidc_clusters_kubeconfig_with_its_exec_login(
    tg: Tg, client: together.Together, tmp_path: Path
) -> None:
    oidc = {
        "issuer_url": "https://login.example.com",
        "client_id": "gpu-clusters",
        "username_claim": "email",
        "username_prefix": "oidc:",
        "group_claim": "groups",
        "group_prefix": "oidc:",
    }
    created = client.clusters.create(
        cluster_name="cli-oidc",
        billing_type="ON_DEMAND",
        gpu_type="H100_SXM",
        num_gpus=8,
        region=H100_REGION,
        nvidia_version_id=H100_DRIVER_ID,
        oidc_config=oidc,  # type: ignore[arg-type]
    )
    try:
        wait_for_cluster(client, created.cluster_id, is_ready, what="cli-oidc to be Ready")
        path = tmp_path / "kubeconfig"
        tg.text("clusters", "get-credentials", created.cluster_id, "--file", str(path))

        (user,) = _kubectl_view(path)["users"]

        assert user["name"] == f"{created.cluster_id}-oidc"
        exec_ = user["user"]["exec"]
        assert exec_["command"] == "kubectl"
        assert "--oidc-issuer-url=https://login.example.com" in exec_["args"]
        assert "client-certificate-data" not in user["user"]
    finally:
        client.clusters.delete(created.cluster_id)


# --- remediations ----------------------------------------------------------------------


def test_remediation_create_list_retrieve_and_cancel(
    tg: Tg, client: together.Together, ready_clusters: tuple[Cluster, Cluster]
) -> None:
    """The server may start a manual remediation at once (spec §2.8), so its state is
    only pinned down where it cannot have moved; in-place modes keep the instances."""
    alpha = ready_clusters[0]
    cid = alpha.cluster_id
    first, second = (n.instance_id or "" for n in alpha.gpu_worker_nodes)

    as_json, as_text = tg.side_by_side(
        (
            "clusters", "remediations", "create", cid, first,
            "--mode", "REBOOT_VM", "--reason", "xid 79", "--json",
        ),
        (
            "clusters", "remediations", "create", cid, second,
            "--mode", "HOST_POWER_CYCLE", "--no-json",
        ),
    )  # fmt: skip
    reboot = json.loads(as_json)
    assert (reboot["cluster_id"], reboot["instance_id"]) == (cid, first)
    assert (reboot["mode"], reboot["state"]) == ("REMEDIATION_MODE_REBOOT_VM", "PENDING")
    assert reboot["trigger"] == "REMEDIATION_TRIGGER_MANUAL"
    match = re.search(r"Remediation created \(([A-Za-z0-9-]+)\)", as_text)
    assert match, as_text
    power_cycle = match.group(1)

    every_manual_state = [arg for state in MANUAL_STATES for arg in ("--state", state)]
    table, fetched_json = tg.side_by_side(
        (
            "clusters", "remediations", "list", cid, *every_manual_state,
            "--mode", "HOST_POWER_CYCLE", "--mode", "VM_ONLY", "--trigger", "MANUAL",
            "--no-json",
        ),
        ("clusters", "remediations", "retrieve", reboot["id"], "--json"),
    )  # fmt: skip
    assert power_cycle in table
    assert reboot["id"] not in table
    assert "HOST_POWER_CYCLE" in table
    fetched = json.loads(fetched_json)
    assert (fetched["id"], fetched["instance_id"], fetched["reason"]) == (
        reboot["id"],
        first,
        "xid 79",
    )
    assert fetched["state"] in MANUAL_STATES

    result = tg("clusters", "remediations", "cancel", power_cycle, "--no-json", exit_code=None)
    state = client.clusters.remediations.retrieve(
        power_cycle, cluster_id=cid, instance_id=second
    ).state
    if result.returncode == 0:
        assert f"Remediation cancelled. ({power_cycle})" in result.stdout
        assert state == "CANCELLED"
    else:
        # Already under way: the CLI exits 1 with the server's reason.
        assert result.returncode == 1
        assert "cannot cancel a remediation in state" in result.stdout
        assert state not in ("PENDING", "PENDING_APPROVAL")
