"""The web console in headless chromium against a real server: sign in, create a cluster
and watch it reach Ready on the timeline without a reload, approve a remediation from
the inbox, open the fleet view. Screenshots of the cluster page and the fleet view are
written under `.artifacts/browser` and checked to be drawn, not blank."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import (
    assert_not_blank,
    colours,
    hex_rgb,
    screenshot,
    sign_in,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

CREATE = {
    "cluster_name": "from-api",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
READY_GREEN = hex_rgb("#1a7f37")  # the timeline's Ready / running bands (console.css)


def api(server: ServerProcess) -> httpx.Client:
    return server.client()


def ready_cluster(server: ServerProcess, **overrides: Any) -> dict[str, Any]:
    with api(server) as client:
        created = client.post("/v1/compute/clusters", json={**CREATE, **overrides})
        assert created.status_code == 200, created.text
        cluster_id = created.json()["cluster_id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            cluster: dict[str, Any] = client.get(f"/v1/compute/clusters/{cluster_id}").json()
            if cluster["status"] == "Ready":
                return cluster
            time.sleep(0.25)
    raise AssertionError(f"cluster {cluster_id} did not become Ready")


def mark_page(page: Page) -> None:
    """A value in the page's memory: still there later means the page never reloaded."""
    page.evaluate("window.consoleTestMark = 'kept'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.consoleTestMark") == "kept"


def test_a_person_signs_in_with_an_api_key_kept_out_of_the_address(
    page: Page, console_server: ServerProcess
):
    answer = page.goto(console_server.base_url + "/")
    assert answer is not None and "script-src 'self'" in answer.headers["content-security-policy"]
    page.get_by_label("API key").fill("not-a-key-of-this-server")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")

    page.get_by_label("API key").fill(console_server.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Clusters", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Sections")).to_contain_text("Fleet")
    expect(page.locator("#live-state")).to_have_text("Live")
    assert console_server.api_key not in page.url
    assert page.evaluate("sessionStorage.getItem('clusterplane.apiKey')") == console_server.api_key


def test_a_cluster_created_in_the_console_reaches_ready_on_its_timeline_without_a_reload(
    page: Page, console_server: ServerProcess
):
    sign_in(page, console_server.base_url, console_server.api_key)
    mark_page(page)
    page.get_by_label("Name").fill("watched")
    page.get_by_label("GPUs", exact=True).fill("16")
    page.get_by_role("button", name="Create cluster").click()

    timeline = page.locator("svg.timeline")
    expect(timeline).to_be_visible()
    first_status = timeline.get_attribute("data-cluster-status")
    expect(page.locator("svg.timeline[data-cluster-status='Ready']")).to_be_attached(timeout=60_000)
    assert first_status != "Ready"  # it was seen coming up, then Ready arrived live
    assert_not_reloaded(page)
    ready_band = timeline.locator("g.band[data-row='cluster'][data-phase='CLUSTER_PHASE_READY']")
    expect(ready_band).to_have_count(1)
    assert timeline.locator("g.band[data-row='cluster']").count() >= 5  # the bring-up phases
    expect(page.locator("tr[data-node]")).to_have_count(5)  # 3 control plane, 2 workers
    expect(page.get_by_role("button", name="Download kubeconfig")).to_be_enabled()

    drawn = console_server.workdir / "timeline.png"
    timeline.screenshot(path=str(drawn))
    assert READY_GREEN in colours(drawn), "no Ready band was drawn"
    assert_not_blank(screenshot(page, "cluster-page.png"))


def test_a_remediation_proposed_for_a_node_is_approved_from_the_inbox(
    page: Page, console_server: ServerProcess
):
    # Three workers: one unhealthy stays under the share that stops automatic repair.
    cluster = ready_cluster(console_server, cluster_name="repaired", num_gpus=24)
    victim = cluster["gpu_worker_nodes"][0]
    sign_in(page, console_server.base_url, console_server.api_key)
    page.get_by_role("link", name="Remediations").click()
    expect(page.get_by_role("heading", name="Waiting for approval (0)")).to_be_visible()
    mark_page(page)

    with api(console_server) as client:
        fault = client.post(
            f"/admin/v1/fleet/hosts/{victim['host_name']}/faults",
            json={"kind": "xid", "xid_code": 79},
        )
        assert fault.status_code == 200, fault.text
    waiting = page.locator("tr[data-state='PENDING_APPROVAL']", has_text=victim["node_id"])
    expect(waiting).to_be_visible(timeout=30_000)
    remediation_id = waiting.get_attribute("data-remediation-id")

    waiting.get_by_role("button", name="Approve").click()
    expect(page.get_by_text(f"The repair of {victim['node_id']} is now Pending")).to_be_visible()
    expect(page.locator(f"tr[data-remediation-id='{remediation_id}']")).not_to_have_attribute(
        "data-state", "PENDING_APPROVAL"
    )
    expect(page.get_by_role("heading", name="Waiting for approval (0)")).to_be_visible()
    assert_not_reloaded(page)
    with api(console_server) as client:
        listed = client.get(
            f"/v1/compute/clusters/{cluster['cluster_id']}/instances/-/remediations"
        ).json()["remediations"]
    [approved] = [r for r in listed if r["id"] == remediation_id]
    assert approved["state"] != "PENDING_APPROVAL" and approved["reviewed_by"]


def test_an_admin_opens_the_fleet_view_of_hosts_utilisation_pools_and_bookings(
    page: Page, console_server: ServerProcess
):
    with api(console_server) as client:
        booked = client.post(
            "/v1/compute/clusters",
            json={**CREATE, "cluster_name": "booked", "billing_type": "RESERVED",
                  "duration_days": 3, "num_gpus": 8},
        )  # fmt: skip
        assert booked.status_code == 200, booked.text
        now = client.get("/admin/v1/capacity/calendar").json()["now"]
        pool = client.post(
            "/admin/v1/capacity/pools",
            json={"name": "held-l40", "region": "test-2", "gpu_type": "L40_PCIE",
                  "starts_at": now, "ends_at": "2099-01-01T00:00:00Z", "num_hosts": 1,
                  "project_id": "proj_default"},
        )  # fmt: skip
        assert pool.status_code == 200, pool.text
    sign_in(page, console_server.base_url, console_server.api_key)
    mark_page(page)
    page.get_by_role("link", name="Fleet").click()

    expect(page.locator("li.host")).to_have_count(20)  # the small fleet
    expect(page.get_by_role("region", name="Region test-1")).to_contain_text("Rack r04")
    expect(page.locator("tr[data-gpu-type='H100_SXM']")).to_contain_text("of 128 GPUs")
    expect(page.locator("tr[data-gpu-type='L40_PCIE']")).to_be_visible()
    expect(page.get_by_role("row", name="held-l40")).to_contain_text("L40_PCIE")
    expect(page.locator("g.booking", has_text="booked")).to_have_count(1)

    with api(console_server) as client:
        drained = client.post("/admin/v1/fleet/hosts/test1-r04-04/drain")
        assert drained.status_code == 200, drained.text
    expect(page.locator("li.host.draining[data-host='test1-r04-04']")).to_be_attached()
    assert_not_reloaded(page)
    assert_not_blank(screenshot(page, "fleet-view.png"))
