"""Conformance: the official `together` SDK (3.1.1) against a real server process.

Every method of `client.clusters`, `client.clusters.storage` and
`client.clusters.remediations` is called as a user would call it, with nothing but
`base_url` and `api_key` configured (spec §1.1, §9).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

import pytest
import together
import yaml
from together.types.cluster import Cluster, PhaseTransition
from together.types.clusters.cluster_storage import ClusterStorage
from together.types.clusters.remediation import Remediation

from tests.compat.support import (
    H100_DRIVER_ID,
    H100_REGION,
    L40_DRIVER_ID,
    L40_REGION,
    create_h100_cluster,
    create_tenant,
    fleet_hosts,
    is_ready,
    repair_anew,
    running_workers,
    wait_for_cluster,
    wait_until,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.compat

CLUSTER_PHASES = set(get_args(PhaseTransition.model_fields["phase"].annotation))
VOLUME_STATUSES = set(get_args(ClusterStorage.model_fields["status"].annotation))
EARLY_STATUSES = {"WaitingForControlPlaneNodes", "Scheduled"}


def sdk(server: ServerProcess, api_key: str | None = None, suffix: str = "") -> together.Together:
    return together.Together(base_url=server.base_url + suffix, api_key=api_key or server.api_key)


@pytest.fixture(scope="module")
def client(module_server: ServerProcess) -> Iterator[together.Together]:
    with sdk(module_server) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def remediation_cluster_id(client: together.Together) -> Iterator[str]:
    """A 16-GPU cluster (two workers) created as the module starts, so that it comes up
    while the tests before the remediation tests run."""
    created = create_h100_cluster(client, "sdk-remediations", 16)
    yield created.cluster_id
    client.clusters.delete(created.cluster_id)


@pytest.fixture(scope="module")
def ready_cluster(client: together.Together, remediation_cluster_id: str) -> Cluster:
    return wait_for_cluster(client, remediation_cluster_id, is_ready, what="it to be Ready")


# --- clusters --------------------------------------------------------------------------


def test_list_regions_shows_each_region_with_its_gpu_types_and_driver_catalog(
    client: together.Together,
) -> None:
    regions = {r.name: r for r in client.clusters.list_regions().regions}

    assert set(regions) == {H100_REGION, L40_REGION}
    assert regions[H100_REGION].supported_instance_types == ["H100_SXM"]
    assert regions[L40_REGION].supported_instance_types == ["L40_PCIE"]
    (h100_driver,) = regions[H100_REGION].driver_versions
    assert (h100_driver.id, h100_driver.cuda_version, h100_driver.nvidia_driver_version) == (
        H100_DRIVER_ID,
        "12.8",
        "570",
    )
    assert h100_driver.os == "ubuntu-22.04"
    assert [d.id for d in regions[L40_REGION].driver_versions] == [L40_DRIVER_ID]


def test_create_with_nvidia_version_id_returns_the_queued_cluster_at_once(
    client: together.Together,
) -> None:
    cluster = client.clusters.create(
        cluster_name="sdk-version-id",
        billing_type="ON_DEMAND",
        gpu_type="H100_SXM",
        num_gpus=8,
        region=H100_REGION,
        nvidia_version_id=H100_DRIVER_ID,
    )
    try:
        assert cluster.cluster_id
        assert cluster.cluster_name == "sdk-version-id"
        assert cluster.status in EARLY_STATUSES
        assert cluster.phase_transitions[0].phase == "CLUSTER_PHASE_QUEUED"
        assert (cluster.cuda_version, cluster.nvidia_driver_version) == ("12.8", "570")
        assert cluster.nvidia_driver_version_id == H100_DRIVER_ID
        assert (cluster.region, cluster.gpu_type, cluster.num_gpus) == (
            H100_REGION,
            "H100_SXM",
            8,
        )
        assert cluster.billing_type == "ON_DEMAND"
        assert cluster.cluster_type == "KUBERNETES"
        assert cluster.project_id == "proj_default"

        listed = {c.cluster_id: c for c in client.clusters.list().clusters}
        assert listed[cluster.cluster_id].cluster_name == "sdk-version-id"
        again = client.clusters.retrieve(cluster.cluster_id)
        assert (again.cluster_id, again.cluster_name) == (cluster.cluster_id, "sdk-version-id")
    finally:
        client.clusters.delete(cluster.cluster_id)


def test_create_with_cuda_and_driver_versions_resolves_the_catalog_entry(
    client: together.Together,
) -> None:
    cluster = client.clusters.create(
        cluster_name="sdk-legacy-versions",
        billing_type="ON_DEMAND",
        gpu_type="L40_PCIE",
        num_gpus=8,
        region=L40_REGION,
        cuda_version="12.6",
        nvidia_driver_version="560",
    )
    try:
        assert cluster.nvidia_driver_version_id == L40_DRIVER_ID
        assert (cluster.cuda_version, cluster.nvidia_driver_version) == ("12.6", "560")
        assert (cluster.region, cluster.gpu_type) == (L40_REGION, "L40_PCIE")
        assert client.clusters.retrieve(cluster.cluster_id).nvidia_driver_version_id == (
            L40_DRIVER_ID
        )
    finally:
        client.clusters.delete(cluster.cluster_id)


def test_create_rejects_a_gpu_count_that_is_not_a_multiple_of_eight_with_400(
    client: together.Together,
) -> None:
    with pytest.raises(together.BadRequestError) as caught:
        create_h100_cluster(client, "sdk-twelve", 12)

    assert caught.value.status_code == 400
    assert "sdk-twelve" not in {c.cluster_name for c in client.clusters.list().clusters}


def test_create_rejects_a_version_id_that_is_not_in_the_regions_catalog_with_400(
    client: together.Together,
) -> None:
    with pytest.raises(together.BadRequestError):
        client.clusters.create(
            cluster_name="sdk-wrong-driver",
            billing_type="ON_DEMAND",
            gpu_type="H100_SXM",
            num_gpus=8,
            region=H100_REGION,
            nvidia_version_id=L40_DRIVER_ID,
        )


def test_update_scales_num_gpus_up_then_down_and_returns_the_new_target(
    client: together.Together,
) -> None:
    cluster = create_h100_cluster(client, "sdk-update", 8)
    try:
        up = client.clusters.update(cluster.cluster_id, num_gpus=16)
        assert up.cluster_id == cluster.cluster_id
        assert up.num_gpus == 16
        assert client.clusters.retrieve(cluster.cluster_id).num_gpus == 16

        down = client.clusters.update(cluster.cluster_id, num_gpus=8)
        assert down.num_gpus == 8
        assert client.clusters.retrieve(cluster.cluster_id).num_gpus == 8

        unchanged = client.clusters.update(cluster.cluster_id)
        assert unchanged.num_gpus == 8

        # One fabric of the region holds 8 hosts: 10 nodes cannot be placed together.
        with pytest.raises(together.ConflictError) as caught:
            client.clusters.update(cluster.cluster_id, num_gpus=80)
        assert caught.value.response.headers.get("x-should-retry") == "false"
        assert "available" in str(caught.value.body)
        after = client.clusters.retrieve(cluster.cluster_id)
        assert after.num_gpus == 8
        assert len([n for n in after.gpu_worker_nodes if not n.marked_for_deletion]) == 1
    finally:
        client.clusters.delete(cluster.cluster_id)


def test_delete_answers_with_the_cluster_id_and_unknown_ids_are_404(
    client: together.Together,
) -> None:
    cluster = create_h100_cluster(client, "sdk-delete", 8)

    assert client.clusters.delete(cluster.cluster_id).cluster_id == cluster.cluster_id
    wait_until(
        lambda: cluster.cluster_id not in {c.cluster_id for c in client.clusters.list().clusters},
        what="the cluster to leave the list",
    )
    with pytest.raises(together.NotFoundError):
        client.clusters.delete("no-such-cluster")
    with pytest.raises(together.NotFoundError):
        client.clusters.retrieve("no-such-cluster")


@pytest.fixture
def own_client(server: ServerProcess) -> Iterator[together.Together]:
    """The SDK on a server of the test's own (the function-scoped `server` fixture)."""
    with sdk(server) as c:
        yield c


def test_full_lifecycle_create_ready_scale_up_scale_down_delete(
    server: ServerProcess, own_client: together.Together
) -> None:
    """On a server of its own, so it can check that every host of the fleet is free again."""
    client = own_client
    created = create_h100_cluster(client, "sdk-lifecycle", 16)
    cid = created.cluster_id

    ready = wait_for_cluster(client, cid, is_ready, what="the cluster to be Ready")

    assert ready.num_gpus == 16
    assert ready.control_plane_ready is True
    assert ready.first_ready_at is not None
    assert len(ready.gpu_worker_nodes) == 2
    for node in ready.gpu_worker_nodes:
        assert node.instance_id
        assert node.host_name
        assert node.networks
        assert node.num_gpus == 8
        assert node.phase_transitions[-1].phase == "NODE_PHASE_RUNNING"
        times = [t.transition_time for t in node.phase_transitions]
        assert times == sorted(times)
    assert len({n.instance_id for n in ready.gpu_worker_nodes}) == 2
    assert ready.control_plane_nodes
    assert all(
        n.phase_transitions[-1].phase == "NODE_PHASE_RUNNING" for n in ready.control_plane_nodes
    )

    phases = [t.phase for t in ready.phase_transitions]
    assert phases[0] == "CLUSTER_PHASE_QUEUED"
    assert phases[-1] == "CLUSTER_PHASE_READY"
    assert len(phases) == len(set(phases))
    assert set(phases) <= CLUSTER_PHASES
    assert (
        phases.index("CLUSTER_PHASE_WAITING_FOR_CONTROL_PLANE_NODES")
        < phases.index("CLUSTER_PHASE_WAITING_FOR_DATA_PLANE_NODES")
        < phases.index("CLUSTER_PHASE_READY")
    )
    times = [t.transition_time for t in ready.phase_transitions]
    assert times == sorted(times)

    kubeconfig = yaml.safe_load(base64.b64decode(ready.kube_config, validate=True))
    assert kubeconfig["clusters"][0]["cluster"]["server"]
    assert kubeconfig["contexts"][0]["context"]["user"] == f"{cid}-admin"
    assert [u["name"] for u in kubeconfig["users"]] == [f"{cid}-admin"]

    held = [h for h in fleet_hosts(server) if h["cluster_id"] == cid]
    assert sorted(h["name"] for h in held) == sorted(n.host_name for n in ready.gpu_worker_nodes)
    assert len({h["fabric"] for h in held}) == 1

    # Scale up to four workers.
    original = {n.node_id for n in ready.gpu_worker_nodes}
    assert client.clusters.update(cid, num_gpus=32).num_gpus == 32
    scaled_up = wait_for_cluster(
        client,
        cid,
        lambda c: is_ready(c) and len(running_workers(c)) == 4 == len(c.gpu_worker_nodes),
        what="4 running workers",
    )
    added = {n.node_id for n in scaled_up.gpu_worker_nodes} - original
    assert len(added) == 2
    scaled_up_events = {
        e.node_id for e in scaled_up.node_lifecycle_events or [] if e.reason == "TogetherScaledUp"
    }
    assert scaled_up_events == added
    held = [h for h in fleet_hosts(server) if h["cluster_id"] == cid]
    assert len(held) == 4
    assert len({h["fabric"] for h in held}) == 1

    # Scale down to one worker.
    assert client.clusters.update(cid, num_gpus=8).num_gpus == 8
    scaled_down = wait_for_cluster(
        client,
        cid,
        lambda c: len(c.gpu_worker_nodes) == 1 and len(c.deleted_gpu_worker_nodes or []) == 3,
        what="1 worker and 3 deleted workers",
    )
    assert scaled_down.num_gpus == 8
    deleted = scaled_down.deleted_gpu_worker_nodes or []
    assert all(n.deleted_at is not None for n in deleted)
    (survivor,) = scaled_down.gpu_worker_nodes
    assert survivor.node_id not in {n.node_id for n in deleted}
    assert survivor.phase_transitions[-1].phase == "NODE_PHASE_RUNNING"
    scaled_down_events = {
        e.node_id
        for e in scaled_down.node_lifecycle_events or []
        if e.reason == "TogetherScaledDown"
    }
    assert scaled_down_events == {n.node_id for n in deleted}
    held = [h for h in fleet_hosts(server) if h["cluster_id"] == cid]
    assert [h["name"] for h in held] == [survivor.host_name]

    # Delete: Deleting at once (and a repeat is answered the same), then gone, and the
    # whole fleet is free again.
    assert client.clusters.delete(cid).cluster_id == cid
    assert client.clusters.delete(cid).cluster_id == cid
    deleting = {c.cluster_id: c.status for c in client.clusters.list().clusters}
    assert deleting.get(cid) == "Deleting"
    wait_until(
        lambda: cid not in {c.cluster_id for c in client.clusters.list().clusters},
        what="the cluster to leave the list",
    )
    with pytest.raises(together.NotFoundError):
        client.clusters.retrieve(cid)
    hosts = fleet_hosts(server)
    assert len(hosts) == 20
    assert [h["name"] for h in hosts if h["cluster_id"] is not None] == []
    assert {h["state"] for h in hosts} == {"available"}


def test_capacity_exhaustion_is_a_409_that_says_what_is_available(
    client: together.Together,
) -> None:
    with pytest.raises(together.APIStatusError) as caught:
        client.clusters.create(
            cluster_name="sdk-too-big",
            billing_type="ON_DEMAND",
            gpu_type="L40_PCIE",
            num_gpus=40,
            region=L40_REGION,
            nvidia_version_id=L40_DRIVER_ID,
        )

    error = caught.value
    assert isinstance(error, together.ConflictError)
    assert error.status_code == 409
    assert error.response.headers.get("x-should-retry") == "false"
    assert isinstance(error.body, dict)
    message = error.body["error"]["message"]
    assert "5 nodes" in message
    assert "L40_PCIE" in message
    assert L40_REGION in message
    assert "available" in message
    assert "sdk-too-big" not in {c.cluster_name for c in client.clusters.list().clusters}


def test_a_project_the_caller_is_not_a_member_of_stays_invisible(
    module_server: ServerProcess, client: together.Together
) -> None:
    tenant = create_tenant(module_server, "sdk-outsider")
    with sdk(module_server, tenant.api_key) as outsider:
        theirs = create_h100_cluster(outsider, "sdk-outsiders-cluster", 8)
        volume = outsider.clusters.storage.create(
            region=H100_REGION, size_tib=1, volume_name="sdk-outsiders-volume"
        )
        try:
            assert theirs.project_id == tenant.project_id
            assert [c.cluster_id for c in outsider.clusters.list().clusters] == [theirs.cluster_id]
            assert client.clusters.list(project_id=tenant.project_id).clusters == []
            assert client.clusters.storage.list(project_id=tenant.project_id).volumes == []
            assert theirs.cluster_id not in {c.cluster_id for c in client.clusters.list().clusters}
            with pytest.raises(together.NotFoundError):
                client.clusters.retrieve(theirs.cluster_id)
            with pytest.raises(together.NotFoundError):
                client.clusters.storage.retrieve(volume.volume_id)
            assert outsider.clusters.list(project_id="proj_default").clusters == []
        finally:
            outsider.clusters.delete(theirs.cluster_id)


def test_a_2x_style_base_url_ending_in_v1_still_reaches_the_api(
    module_server: ServerProcess,
) -> None:
    with sdk(module_server, suffix="/v1") as old_habit:
        names = {r.name for r in old_habit.clusters.list_regions().regions}
        assert names == {H100_REGION, L40_REGION}
        assert isinstance(old_habit.clusters.list().clusters, list)
        assert isinstance(old_habit.clusters.storage.list().volumes, list)


def test_an_unknown_api_key_is_refused_with_401(module_server: ServerProcess) -> None:
    bad_key = "cp_key_0000000000000000_notarealsecretnotarealsecret"
    with sdk(module_server, api_key=bad_key) as c, pytest.raises(together.AuthenticationError):
        c.clusters.list()


# --- storage ---------------------------------------------------------------------------


def test_storage_volume_create_list_retrieve_resize_and_delete(client: together.Together) -> None:
    volume = client.clusters.storage.create(
        region=H100_REGION, size_tib=2, volume_name="sdk-datasets"
    )

    assert volume.volume_id
    assert (volume.volume_name, volume.size_tib) == ("sdk-datasets", 2)
    assert volume.status in VOLUME_STATUSES
    assert volume.volume_id in {v.volume_id for v in client.clusters.storage.list().volumes}
    available = wait_until(
        lambda: (
            (v := client.clusters.storage.retrieve(volume.volume_id)).status == "available" and v
        ),
        what="the volume to be available",
    )
    assert (available.volume_name, available.size_tib) == ("sdk-datasets", 2)

    grown = client.clusters.storage.update(volume_id=volume.volume_id, size_tib=4)
    assert (grown.volume_id, grown.size_tib) == (volume.volume_id, 4)
    assert client.clusters.storage.retrieve(volume.volume_id).size_tib == 4
    untouched = client.clusters.storage.update(volume_id=volume.volume_id)
    assert untouched.size_tib == 4

    assert client.clusters.storage.delete(volume.volume_id).success is True

    def gone() -> bool:
        try:
            client.clusters.storage.retrieve(volume.volume_id)
        except together.NotFoundError:
            return True
        return False

    wait_until(gone, what="the volume to be deleted")
    assert volume.volume_id not in {v.volume_id for v in client.clusters.storage.list().volumes}


def test_deleting_a_volume_attached_to_a_cluster_is_refused_until_the_cluster_is_gone(
    client: together.Together,
) -> None:
    volume = client.clusters.storage.create(
        region=H100_REGION, size_tib=1, volume_name="sdk-attached"
    )
    cluster = client.clusters.create(
        cluster_name="sdk-with-volume",
        billing_type="ON_DEMAND",
        gpu_type="H100_SXM",
        num_gpus=8,
        region=H100_REGION,
        nvidia_version_id=H100_DRIVER_ID,
        volume_id=volume.volume_id,
    )
    try:
        assert [v.volume_id for v in cluster.volumes] == [volume.volume_id]
        with pytest.raises(together.APIStatusError) as caught:
            client.clusters.storage.delete(volume.volume_id)
        assert caught.value.status_code == 409
        assert isinstance(caught.value, together.ConflictError)
        assert caught.value.response.headers.get("x-should-retry") == "false"
        assert "is attached to cluster" in str(caught.value)
        assert client.clusters.storage.retrieve(volume.volume_id).volume_id == volume.volume_id
    finally:
        client.clusters.delete(cluster.cluster_id)

    wait_until(
        lambda: cluster.cluster_id not in {c.cluster_id for c in client.clusters.list().clusters},
        what="the cluster to be deleted",
    )
    assert client.clusters.storage.delete(volume.volume_id).success is True


def test_shrinking_a_volume_is_a_400_and_the_size_stays(client: together.Together) -> None:
    volume = client.clusters.storage.create(
        region=H100_REGION, size_tib=3, volume_name="sdk-no-shrink"
    )

    with pytest.raises(together.BadRequestError) as caught:
        client.clusters.storage.update(volume_id=volume.volume_id, size_tib=2)

    assert "volumes can only grow" in str(caught.value)
    assert client.clusters.storage.retrieve(volume.volume_id).size_tib == 3
    client.clusters.storage.delete(volume.volume_id)


def test_a_volume_over_the_servers_size_limit_is_a_400(client: together.Together) -> None:
    with pytest.raises(together.BadRequestError) as caught:
        client.clusters.storage.create(region=H100_REGION, size_tib=5000, volume_name="sdk-huge")

    assert "1 to 1024 TiB" in str(caught.value)
    assert "sdk-huge" not in {v.volume_name for v in client.clusters.storage.list().volumes}


def test_a_region_out_of_shared_storage_is_a_409_that_is_not_retried(
    client: together.Together, module_server: ServerProcess
) -> None:
    # small.yaml gives test-2 10 TiB of shared storage; nothing else in this module uses it.
    # The operator lets this project fill the region (the default quota is a quarter).
    with module_server.client() as admin:
        quota = admin.put("/admin/v1/projects/proj_default/quota", json={"max_storage_tib": 20})
        assert quota.status_code == 200, quota.text
    full = client.clusters.storage.create(region=L40_REGION, size_tib=10, volume_name="sdk-full")
    try:
        with pytest.raises(together.ConflictError) as caught:
            client.clusters.storage.create(region=L40_REGION, size_tib=1, volume_name="sdk-more")
        assert caught.value.response.headers.get("x-should-retry") == "false"
        assert "0 TiB of shared storage free" in str(caught.value)
        with pytest.raises(together.ConflictError):
            client.clusters.storage.update(volume_id=full.volume_id, size_tib=11)
    finally:
        client.clusters.storage.delete(full.volume_id)


def test_an_inline_shared_volume_is_created_and_attached_with_the_cluster(
    client: together.Together,
) -> None:
    cluster = client.clusters.create(
        cluster_name="sdk-inline-volume",
        billing_type="ON_DEMAND",
        gpu_type="H100_SXM",
        num_gpus=8,
        region=H100_REGION,
        nvidia_version_id=H100_DRIVER_ID,
        shared_volume={"volume_name": "sdk-inline", "size_tib": 2, "region": H100_REGION},
    )
    try:
        (attached,) = cluster.volumes
        assert (attached.volume_name, attached.size_tib) == ("sdk-inline", 2)
        listed = {v.volume_id: v for v in client.clusters.storage.list().volumes}
        assert listed[attached.volume_id].volume_name == "sdk-inline"
        bound = wait_for_cluster(
            client,
            cluster.cluster_id,
            lambda c: bool(c.volumes) and c.volumes[0].status == "bound",
            what="the inline volume to be bound",
        )
        assert bound.volumes[0].volume_id == attached.volume_id
    finally:
        client.clusters.delete(cluster.cluster_id)

    def volume_gone() -> bool:
        try:
            client.clusters.storage.retrieve(attached.volume_id)
        except together.NotFoundError:
            return True
        return False

    wait_until(volume_gone, what="the inline volume to go with its cluster")


# --- remediations ----------------------------------------------------------------------
#
# A manual remediation starts PENDING ("approved and queued", spec §2.8) and the server may
# start carrying it out at once (PENDING -> QUARANTINING -> ...). These tests assert what
# holds at every point of that execution: mode, trigger and ids never change, a manual
# remediation is never PENDING_APPROVAL, and a state filter matches the state a
# remediation had while the filtered list was read. Only in-place modes are used, so the
# shared cluster keeps its instances.

ALL_STATES = set(get_args(Remediation.model_fields["state"].annotation))
MANUAL_STATES = sorted(ALL_STATES - {"PENDING_APPROVAL"})


@dataclass(frozen=True)
class RemediationSet:
    cluster_id: str
    instances: tuple[str, str]
    reboot_first: str  # REBOOT_VM on instances[0]
    power_cycle_first: str  # HOST_POWER_CYCLE on instances[0]
    reboot_second: str  # REBOOT_VM on instances[1]

    @property
    def ids(self) -> set[str]:
        return {self.reboot_first, self.power_cycle_first, self.reboot_second}


@pytest.fixture(scope="module")
def remediation_set(client: together.Together, ready_cluster: Cluster) -> RemediationSet:
    cid = ready_cluster.cluster_id
    first, second = (n.instance_id or "" for n in ready_cluster.gpu_worker_nodes)
    reboot = repair_anew(client, cid, first, "REMEDIATION_MODE_REBOOT_VM")
    power = repair_anew(client, cid, first, "REMEDIATION_MODE_HOST_POWER_CYCLE")
    other = repair_anew(client, cid, second, "REMEDIATION_MODE_REBOOT_VM")
    return RemediationSet(cid, (first, second), reboot.id, power.id, other.id)


def test_a_manual_remediation_is_created_pending_and_can_be_retrieved(
    client: together.Together, ready_cluster: Cluster
) -> None:
    cid = ready_cluster.cluster_id
    iid = ready_cluster.gpu_worker_nodes[0].instance_id or ""
    api = client.clusters.remediations

    created = repair_anew(client, cid, iid, "REMEDIATION_MODE_REBOOT_VM", reason="xid 79")

    assert created.id
    assert (created.cluster_id, created.instance_id) == (cid, iid)
    assert (created.state, created.trigger) == ("PENDING", "REMEDIATION_TRIGGER_MANUAL")
    assert created.mode == "REMEDIATION_MODE_REBOOT_VM"
    assert created.reason == "xid 79"
    assert created.requested_by
    assert created.create_time is not None

    fetched = api.retrieve(created.id, cluster_id=cid, instance_id=iid)
    assert (fetched.id, fetched.cluster_id, fetched.instance_id) == (created.id, cid, iid)
    assert (fetched.mode, fetched.trigger, fetched.reason) == (
        "REMEDIATION_MODE_REBOOT_VM",
        "REMEDIATION_TRIGGER_MANUAL",
        "xid 79",
    )
    assert fetched.state in MANUAL_STATES
    node = next(n for n in client.clusters.retrieve(cid).gpu_worker_nodes if n.instance_id == iid)
    assert node.latest_remediation is not None
    assert node.latest_remediation.id == created.id


def test_cancel_ends_a_remediation_that_has_not_started_and_refuses_one_that_has(
    client: together.Together, ready_cluster: Cluster
) -> None:
    cid = ready_cluster.cluster_id
    iid = ready_cluster.gpu_worker_nodes[1].instance_id or ""
    api = client.clusters.remediations
    created = repair_anew(client, cid, iid, "REMEDIATION_MODE_REBOOT_VM")

    try:
        cancelled = api.cancel(created.id, cluster_id=cid, instance_id=iid)
    except together.BadRequestError as refused:
        # Execution had begun: the refusal says so, and the remediation is past PENDING.
        assert "cannot cancel" in str(refused.body)
        state = api.retrieve(created.id, cluster_id=cid, instance_id=iid).state
        assert state not in ("PENDING", "PENDING_APPROVAL")
    else:
        assert (cancelled.id, cancelled.state) == (created.id, "CANCELLED")
        assert cancelled.end_time is not None
        time.sleep(0.3)  # long enough for the controllers to have looked at it again
        assert api.retrieve(created.id, cluster_id=cid, instance_id=iid).state == "CANCELLED"

    # Whatever happened above, a cancelled remediation cannot be cancelled again.
    def finished() -> str | None:
        state = api.retrieve(created.id, cluster_id=cid, instance_id=iid).state
        return state if state in ("SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED") else None

    wait_until(finished, what="the remediation to end")
    with pytest.raises(together.BadRequestError):
        api.cancel(created.id, cluster_id=cid, instance_id=iid)


def test_approve_and_reject_refuse_a_manual_remediation_with_400(
    client: together.Together, ready_cluster: Cluster
) -> None:
    cid = ready_cluster.cluster_id
    iid = ready_cluster.gpu_worker_nodes[1].instance_id or ""
    api = client.clusters.remediations
    created = repair_anew(client, cid, iid, "REMEDIATION_MODE_REBOOT_VM")

    with pytest.raises(together.BadRequestError):
        api.approve(created.id, cluster_id=cid, instance_id=iid, comment="go")
    with pytest.raises(together.BadRequestError):
        api.reject(created.id, cluster_id=cid, instance_id=iid, comment="no")

    after = api.retrieve(created.id, cluster_id=cid, instance_id=iid)
    assert after.mode == "REMEDIATION_MODE_REBOOT_VM"
    assert (after.reviewed_by, after.review_comment) == (None, None)
    assert after.state in MANUAL_STATES


def test_remediations_of_unknown_instances_or_ids_are_404(
    client: together.Together, ready_cluster: Cluster
) -> None:
    cid = ready_cluster.cluster_id
    iid = ready_cluster.gpu_worker_nodes[0].instance_id or ""
    api = client.clusters.remediations

    with pytest.raises(together.NotFoundError):
        api.create("no-such-instance", cluster_id=cid, mode="REMEDIATION_MODE_REBOOT_VM")
    with pytest.raises(together.NotFoundError):
        api.retrieve("no-such-remediation", cluster_id=cid, instance_id=iid)
    with pytest.raises(together.NotFoundError):
        api.list("-", cluster_id="no-such-cluster")


def test_remediation_list_with_instance_wildcard_and_one_instance(
    client: together.Together, remediation_set: RemediationSet
) -> None:
    rs = remediation_set
    api = client.clusters.remediations

    everything = api.list("-", cluster_id=rs.cluster_id, page_size=100)
    first_only = api.list(rs.instances[0], cluster_id=rs.cluster_id, page_size=100)

    assert rs.ids <= {r.id for r in everything.remediations}
    assert (everything.has_next, everything.next_page_token) == (False, "")
    assert all(r.cluster_id == rs.cluster_id for r in everything.remediations)
    assert {r.instance_id for r in first_only.remediations} == {rs.instances[0]}
    assert {r.id for r in first_only.remediations} & rs.ids == {
        rs.reboot_first,
        rs.power_cycle_first,
    }


def test_remediation_list_filters_by_lists_of_modes_and_triggers(
    client: together.Together, remediation_set: RemediationSet
) -> None:
    rs = remediation_set

    def ours(**filters: Any) -> set[str]:
        page = client.clusters.remediations.list(
            "-", cluster_id=rs.cluster_id, page_size=100, **filters
        )
        return {r.id for r in page.remediations} & rs.ids

    assert ours(mode=["REMEDIATION_MODE_REBOOT_VM"]) == {rs.reboot_first, rs.reboot_second}
    assert ours(mode=["REMEDIATION_MODE_HOST_POWER_CYCLE", "REMEDIATION_MODE_VM_ONLY"]) == {
        rs.power_cycle_first
    }
    assert ours(mode=["REMEDIATION_MODE_VM_ONLY", "REMEDIATION_MODE_HOST_AWARE"]) == set()
    assert ours(trigger=["REMEDIATION_TRIGGER_MANUAL"]) == rs.ids
    assert ours(trigger=["REMEDIATION_TRIGGER_AUTOMATED"]) == set()
    assert ours(trigger=["REMEDIATION_TRIGGER_MANUAL", "REMEDIATION_TRIGGER_AUTOMATED"]) == rs.ids
    assert (
        ours(
            mode=["REMEDIATION_MODE_HOST_POWER_CYCLE", "REMEDIATION_MODE_REBOOT_VM"],
            trigger=["REMEDIATION_TRIGGER_MANUAL"],
        )
        == rs.ids
    )


def test_remediation_list_filters_by_lists_of_states(
    client: together.Together, remediation_set: RemediationSet
) -> None:
    rs = remediation_set
    api = client.clusters.remediations

    def states() -> dict[str, str]:
        page = api.list("-", cluster_id=rs.cluster_id, page_size=100)
        return {r.id: r.state for r in page.remediations if r.id in rs.ids}

    def ours(state: list[str]) -> set[str]:
        page = api.list("-", cluster_id=rs.cluster_id, page_size=100, state=state)  # type: ignore[arg-type]
        return {r.id for r in page.remediations} & rs.ids

    assert ours(MANUAL_STATES) == rs.ids
    assert ours(["PENDING_APPROVAL"]) == set()

    # Compare a filtered read with the states read just before and after it; a
    # remediation whose state did not move in between must match the filter exactly.
    checked = 0
    for wanted in (["PENDING", "SUCCEEDED"], ["QUARANTINING", "QUARANTINED", "RUNNING"]):
        before = states()
        matched = ours(wanted)
        after = states()
        steady = {i for i in rs.ids if before[i] == after[i]}
        assert {i for i in steady if before[i] in wanted} == matched & steady
        checked += len(steady)
    assert checked > 0


def test_remediation_pages_of_one_walk_every_item_once_until_has_next_is_false(
    client: together.Together, remediation_set: RemediationSet
) -> None:
    rs = remediation_set
    api = client.clusters.remediations
    everything = [r.id for r in api.list("-", cluster_id=rs.cluster_id, page_size=100).remediations]
    assert len(everything) >= 3

    walked: list[str] = []
    token: str | None = None
    while True:
        if token is None:
            page = api.list("-", cluster_id=rs.cluster_id, page_size=1)
        else:
            page = api.list("-", cluster_id=rs.cluster_id, page_size=1, page_token=token)
        assert len(page.remediations) == 1
        walked.append(page.remediations[0].id)
        if not page.has_next:
            assert page.next_page_token == ""
            break
        assert page.next_page_token
        token = page.next_page_token
        assert len(walked) <= len(everything)

    assert walked == everything
