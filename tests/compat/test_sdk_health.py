"""The evidence chain through the official SDK: an injected XID 79 on a real server
becomes an automated remediation the SDK lists, approves and follows to a new node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import together

from tests.compat.support import create_h100_cluster, is_ready, wait_for_cluster, wait_until
from tests.support.server import ServerProcess

pytestmark = pytest.mark.compat


@pytest.fixture
def client(server: ServerProcess) -> Iterator[together.Together]:
    with together.Together(base_url=server.base_url, api_key=server.api_key) as c:
        yield c


def test_an_injected_xid_79_is_traceable_from_event_to_remediation_to_new_node(
    server: ServerProcess, client: together.Together
) -> None:
    created = create_h100_cluster(client, "sdk-health", 24)
    cluster = wait_for_cluster(client, created.cluster_id, is_ready, what="it to be Ready")
    cid = cluster.cluster_id
    victim = cluster.gpu_worker_nodes[0]
    with server.client() as admin:
        injected = admin.post(
            f"/admin/v1/fleet/hosts/{victim.host_name}/faults", json={"kind": "xid", "xid_code": 79}
        )
        assert injected.status_code == 200, injected.text
    api = client.clusters.remediations

    def proposed() -> list[object] | None:
        page = api.list("-", cluster_id=cid, trigger=["REMEDIATION_TRIGGER_AUTOMATED"])
        return list(page.remediations) or None

    [proposal] = wait_until(proposed, what="an automated remediation", timeout=30)
    assert proposal.state == "PENDING_APPROVAL"  # type: ignore[attr-defined]
    assert proposal.instance_id == victim.instance_id  # type: ignore[attr-defined]
    rid: str = proposal.id  # type: ignore[attr-defined]
    fetched = api.retrieve(rid, cluster_id=cid, instance_id="-")
    assert fetched.linked_alerts and fetched.linked_alerts[0].alert_name == "DmesgGpuFallenOffBus"
    event_id = fetched.passive_health_check_event_id
    assert event_id == fetched.linked_alerts[0].passive_health_check_alert_id
    assert client.clusters.retrieve(cid).status == "Degraded"

    approved = api.approve(rid, cluster_id=cid, instance_id="-", comment="replace it")
    assert approved.state == "PENDING" and approved.review_comment == "replace it"

    def finished() -> str | None:
        state = api.retrieve(rid, cluster_id=cid, instance_id="-").state
        return state if state in ("SUCCEEDED", "FAILED", "CANCELLED") else None

    assert wait_until(finished, what="the repair to end", timeout=60) == "SUCCEEDED"
    after = wait_for_cluster(client, cid, is_ready, what="Ready again")
    names = {n.host_name for n in after.gpu_worker_nodes}
    assert victim.host_name not in names and len(after.gpu_worker_nodes) == 3
    new = [
        n
        for n in after.gpu_worker_nodes
        if n.host_name not in {w.host_name for w in cluster.gpu_worker_nodes}
    ]
    assert len(new) == 1
    phases = [p.phase for p in after.phase_transitions or []]
    assert "CLUSTER_PHASE_DEGRADED" in phases and phases[-1] == "CLUSTER_PHASE_READY"
    with server.client() as admin:
        event = admin.get(f"/admin/v1/health/events/{event_id}").json()
    assert event["remediation_id"] == rid and event["xid_code"] == 79
    client.clusters.delete(cid)
