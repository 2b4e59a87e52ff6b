"""`clusterplane clusters|volumes|remediations` against a real server process.

The commands run in-process through `main` (their HTTP goes to the server) with
TOGETHER_BASE_URL and TOGETHER_API_KEY set as a user would; the console script itself
runs as a subprocess where its output stream matters: plain lines into a pipe, the
redrawn status line on a terminal (a pty), a `watch` that outlives its cluster.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from clusterplane.cli.main import main
from clusterplane.db.engine import make_engine
from clusterplane.db.rows import HostRow
from tests.compat.support import Tenant, create_tenant
from tests.support.server import BIN, SMALL_FLEET, ServerProcess, free_port

H100 = ["--region", "test-1", "--gpu-type", "H100_SXM", "--billing-type", "ON_DEMAND"]
FAST = ["--interval", "0.1", "--timeout", "60"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


Cli = Callable[..., Result]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("server"), fleet=SMALL_FLEET) as proc:
        yield proc


@pytest.fixture(scope="module")
def tenant(server: ServerProcess) -> Tenant:
    return create_tenant(server, "cli-user")


def user_env(server: ServerProcess, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOGETHER_")}
    return {**env, "TOGETHER_BASE_URL": server.base_url, "TOGETHER_API_KEY": key}


def cli_as(
    key: str, server: ServerProcess, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> Cli:
    mp.setenv("TOGETHER_BASE_URL", server.base_url)
    mp.setenv("TOGETHER_API_KEY", key)

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def cli(
    server: ServerProcess,
    tenant: Tenant,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    return cli_as(tenant.api_key, server, capsys, monkeypatch)


def api_cluster(server: ServerProcess, key: str, cluster_id: str) -> dict[str, Any]:
    with server.client(key) as client:
        found: dict[str, Any] = client.get(f"/v1/compute/clusters/{cluster_id}").json()
    return found


def short(phase: str) -> str:
    return phase.removeprefix("CLUSTER_PHASE_").removeprefix("NODE_PHASE_")


def printed_phases(out: str, subject: str) -> list[str]:
    """The phases the line display printed for `cluster` or for one node id."""
    found = []
    for line in out.splitlines():
        words = line.split()
        if subject == "cluster" and words[2:3] == ["cluster"]:
            found.append(words[3])
        elif subject != "cluster" and words[3:4] == [subject]:
            found.append(words[4])
    return found


def new_cluster(cli: Cli, name: str, num_gpus: int = 8) -> str:
    made = cli("clusters", "create", "--name", name, "--num-gpus", str(num_gpus), *H100,
               "--no-wait", "--json")  # fmt: skip
    assert made.code == 0, made.err
    cluster_id: str = made.json()["cluster_id"]
    return cluster_id


def test_create_prints_every_phase_until_ready_and_list_and_get_show_the_cluster(
    server: ServerProcess, tenant: Tenant, cli: Cli
):
    done = subprocess.run(
        [str(BIN / "clusterplane"), "clusters", "create", "--name", "demo", "--num-gpus", "8",
         *H100, *FAST],
        env=user_env(server, tenant.api_key), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Creating cluster demo (")
    cluster_id = lines[0].split("(")[1].split(")")[0]
    cluster = api_cluster(server, tenant.api_key, cluster_id)
    assert cluster["status"] == "Ready"
    wire = [short(t["phase"]) for t in cluster["phase_transitions"]]
    assert printed_phases(done.stdout, "cluster") == wire
    assert wire[0] == "QUEUED" and wire[-1] == "READY"
    [worker] = cluster["gpu_worker_nodes"]
    assert printed_phases(done.stdout, worker["node_id"]) == [
        short(t["phase"]) for t in worker["phase_transitions"]
    ]
    ready = rf"cluster demo \({cluster_id}\) is Ready: 8 GPUs on 1 worker \(\d+:\d\d\)"
    assert re.fullmatch(ready, lines[-1])

    listed = cli("clusters", "list")
    assert listed.code == 0
    assert listed.out.split("\n")[0].split() == [
        "CLUSTER_ID", "NAME", "STATUS", "TYPE", "REGION", "GPU_TYPE", "GPUS", "BILLING", "CREATED",
    ]  # fmt: skip
    row = next(line.split() for line in listed.out.splitlines() if cluster_id in line)
    assert row[:8] == [cluster_id, "demo", "Ready", "KUBERNETES", "test-1", "H100_SXM", "8",
                       "ON_DEMAND"]  # fmt: skip
    as_json = cli("clusters", "list", "--json").json()
    assert cluster_id in [c["cluster_id"] for c in as_json["clusters"]]

    shown = cli("clusters", "get", cluster_id)
    assert shown.code == 0 and "Status:            Ready" in shown.out
    worker_row = next(line.split() for line in shown.out.splitlines() if worker["node_id"] in line)
    assert worker_row == [worker["node_id"], "gpu-worker", "Running", "RUNNING",
                          worker["host_name"], "8", worker["instance_id"]]  # fmt: skip
    got = cli("clusters", "get", cluster_id, "--json").json()
    assert (got["cluster_id"], got["status"], got["num_gpus"]) == (cluster_id, "Ready", 8)
    assert cli("clusters", "delete", cluster_id, "--wait", *FAST).code == 0


def test_create_with_json_streams_phase_events_and_ends_with_the_ready_cluster(
    server: ServerProcess, tenant: Tenant, cli: Cli
):
    result = cli("clusters", "create", "--name", "scripted", "--num-gpus", "8", *H100, *FAST,
                 "--json")  # fmt: skip
    assert result.code == 0, result.err
    events = result.events()
    assert events[0]["event"] == "created" and events[0]["cluster"]["cluster_name"] == "scripted"
    last = events[-1]
    assert (last["event"], last["cluster"]["status"]) == ("ready", "Ready")
    cluster_id = last["cluster"]["cluster_id"]
    cluster = api_cluster(server, tenant.api_key, cluster_id)
    phases = [e for e in events[1:-1] if e["event"] == "phase"]
    assert len(phases) == len(events) - 2, "only phase events between the first and the last"
    assert [e["phase"] for e in phases if e["node_id"] is None] == [
        t["phase"] for t in cluster["phase_transitions"]
    ]
    assert {e["status"] for e in phases if e["node_id"] is None} >= {
        "WaitingForControlPlaneNodes", "Ready",
    }  # fmt: skip
    node_events = [e for e in phases if e["node_id"] is not None]
    assert {e["role"] for e in node_events} == {"control-plane", "gpu-worker"}
    assert [e["transition_time"] for e in phases] == sorted(e["transition_time"] for e in phases)
    assert cli("clusters", "delete", cluster_id, "--wait", *FAST).code == 0


def run_on_a_terminal(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `command` with a pty as its stdout and stderr; (exit status, what it wrote)."""
    parent, child = pty.openpty()
    proc = subprocess.Popen(command, stdout=child, stderr=child, env=env)
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([parent], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(parent, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(parent)
    return proc.wait(10), b"".join(chunks).decode()


def test_create_on_a_terminal_redraws_one_status_line_under_the_phase_lines(
    server: ServerProcess, tenant: Tenant, cli: Cli
):
    command = [str(BIN / "clusterplane"), "clusters", "create", "--name", "tty", "--num-gpus",
               "8", *H100, *FAST]  # fmt: skip
    code, written = run_on_a_terminal(command, user_env(server, tenant.api_key), timeout=90)
    assert code == 0, written
    redraws = written.split("\r\x1b[K")
    statuses = [part for part in redraws if "nodes running" in part and "\n" not in part]
    assert len(statuses) >= 3, "the status line is redrawn as the cluster comes up"
    assert any(s.split()[1] == "WaitingForControlPlaneNodes" for s in statuses)
    assert re.search(r"nodes running 0/\d", statuses[0])
    assert any("  READY  (status Ready)" in part for part in redraws)
    final = written.replace("\r\n", "\n").rstrip("\n").split("\n")[-1]
    assert final.endswith(")") and "is Ready: 8 GPUs on 1 worker" in final
    cluster_id = final.split("(")[1].split(")")[0]
    assert cli("clusters", "delete", cluster_id, "--wait", *FAST).code == 0


def test_a_create_whose_node_fails_exits_5_naming_the_node_and_its_host(
    server: ServerProcess, cli: Cli
):
    engine = make_engine(server.database_url)
    with engine.begin() as connection:  # hosts whose driver this server does not have
        connection.execute(
            update(HostRow).where(HostRow.region == "test-2").values(driver="baremetal")
        )
    engine.dispose()
    result = cli("clusters", "create", "--name", "doomed", "--region", "test-2", "--gpu-type",
                 "L40_PCIE", "--num-gpus", "8", "--billing-type", "ON_DEMAND", *FAST)  # fmt: skip
    assert result.code == 5, result.err
    [failed] = [line for line in result.out.splitlines() if line.split()[-3:-2] == ["FAILED"]]
    node_id, host = failed.split()[3], failed.split()[-1]
    assert host.startswith("test2-r01-")
    message = f"failed: gpu-worker {node_id} on {host}"
    assert result.err.startswith("clusterplane: cluster doomed (") and message in result.err
    assert "is Ready" not in result.out


def test_scale_wait_follows_the_new_nodes_and_watch_starts_from_where_the_cluster_is(
    server: ServerProcess, tenant: Tenant, cli: Cli
):
    cluster_id = new_cluster(cli, "growing")
    watched = cli("clusters", "watch", cluster_id, *FAST)
    assert watched.code == 0, watched.err
    assert watched.out.splitlines()[-1].startswith(f"cluster growing ({cluster_id}) is Ready")
    before = api_cluster(server, tenant.api_key, cluster_id)
    [old] = before["gpu_worker_nodes"]

    grown = cli("clusters", "scale", cluster_id, "--num-gpus", "16", "--wait", *FAST)
    assert grown.code == 0, grown.err
    after = api_cluster(server, tenant.api_key, cluster_id)
    [new] = [n for n in after["gpu_worker_nodes"] if n["node_id"] != old["node_id"]]
    assert printed_phases(grown.out, new["node_id"]) == [
        "PENDING", "SCHEDULING", "BOOTING", "BOOTSTRAPPING", "RUNNING",
    ]  # fmt: skip
    assert printed_phases(grown.out, old["node_id"]) == ["RUNNING"], "only its current phase"
    assert printed_phases(grown.out, "cluster") == ["READY"]
    assert "is Ready: 16 GPUs on 2 workers" in grown.out.splitlines()[-1]

    shrunk = cli("clusters", "scale", cluster_id, "--num-gpus", "8", "--json")
    assert shrunk.code == 0 and shrunk.json()["num_gpus"] == 8
    settled = cli("clusters", "watch", cluster_id, "--json", *FAST)
    assert settled.code == 0, settled.err
    last = settled.events()[-1]
    assert last["event"] == "ready" and len(last["cluster"]["gpu_worker_nodes"]) == 1
    assert not any(n["marked_for_deletion"] for n in last["cluster"]["gpu_worker_nodes"])
    assert cli("clusters", "delete", cluster_id, "--wait", *FAST).code == 0


def test_watch_exits_5_when_its_cluster_is_deleted_and_delete_wait_returns_once_it_is_gone(
    server: ServerProcess, tenant: Tenant, cli: Cli
):
    cluster_id = new_cluster(cli, "short-lived")
    watch = subprocess.Popen(
        [str(BIN / "clusterplane"), "clusters", "watch", cluster_id, "--interval", "0.1"],
        env=user_env(server, tenant.api_key), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert watch.stdout is not None
    first = watch.stdout.readline()
    assert first.split()[2] in ("cluster", "control-plane", "gpu-worker"), "it shows where it is"
    deleted = cli("clusters", "delete", cluster_id, "--wait", *FAST)
    assert deleted.code == 0 and deleted.out.strip() == f"cluster {cluster_id} deleted"
    _, err = watch.communicate(timeout=30)
    assert watch.returncode == 5
    assert "is being deleted" in err or "is gone (deleted)" in err
    gone = cli("clusters", "get", cluster_id)
    assert gone.code == 3 and gone.err.strip().endswith("not found (HTTP 404)")
    as_json = cli("clusters", "get", cluster_id, "--json")
    assert as_json.code == 3 and as_json.json()["error"]["message"] in gone.err


def test_errors_show_the_servers_message_and_exit_with_the_documented_codes(
    server: ServerProcess, tenant: Tenant, cli: Cli, monkeypatch: pytest.MonkeyPatch
):
    refused = cli("clusters", "create", "--name", "odd", "--num-gpus", "12", *H100)
    assert refused.code == 3 and refused.out == ""
    assert refused.err.strip() == "clusterplane: num_gpus: must be a multiple of 8 (HTTP 400)"
    as_json = cli("clusters", "create", "--name", "odd", "--num-gpus", "12", *H100, "--json")
    assert as_json.code == 3 and as_json.json()["error"]["param"] == "num_gpus"
    assert cli("clusters", "scale", "c-1").code == 2, "scale with nothing to change is usage"
    assert cli("volumes", "get", "nope").code == 3
    assert cli("clusters", "list", "--api-key", "tk_not_a_key").code == 3
    port = free_port()
    down = cli("clusters", "list", "--base-url", f"http://127.0.0.1:{port}")
    assert down.code == 4 and f"cannot reach http://127.0.0.1:{port}" in down.err

    # Scheduled weeks ahead, so not Ready while it is watched, however slow the machine.
    start = datetime.now(UTC) + timedelta(days=30)
    scheduled = cli("clusters", "create", "--name", "slow", "--num-gpus", "8", *H100,
                    "--billing-type", "SCHEDULED_CAPACITY",
                    "--reservation-start-time", start.isoformat(),
                    "--reservation-end-time", (start + timedelta(days=1)).isoformat(),
                    "--no-wait", "--json")  # fmt: skip
    assert scheduled.code == 0, scheduled.err
    slow = scheduled.json()["cluster_id"]
    timed = cli("clusters", "watch", slow, "--interval", "0.01", "--timeout", "0.01")
    assert timed.code == 6 and "is not Ready after 0.01s" in timed.err
    # Ctrl-C reaches it even when the suite runs in the background of a shell without job
    # control, whose children start with SIGINT ignored (and keep it ignored).
    watch = subprocess.Popen(
        [str(BIN / "clusterplane"), "clusters", "watch", slow, "--interval", "0.2"],
        env=user_env(server, tenant.api_key), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert watch.stdout is not None and watch.stdout.readline()
    watch.send_signal(signal.SIGINT)
    _, err = watch.communicate(timeout=30)
    assert watch.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert cli("clusters", "delete", slow, "--wait", *FAST).code == 0
    monkeypatch.delenv("TOGETHER_API_KEY")
    missing = cli("clusters", "list")
    assert missing.code == 2 and "no API key" in missing.err


def test_volume_commands_create_list_get_resize_and_delete(cli: Cli):
    made = cli("volumes", "create", "--name", "scratch", "--region", "test-1", "--size-tib", "2")
    assert made.code == 0, made.err
    header, row = made.out.splitlines()
    assert header.split() == ["VOLUME_ID", "NAME", "SIZE_TIB", "STATUS"]
    volume_id = row.split()[0]
    assert row.split()[1:3] == ["scratch", "2"]
    other = cli("volumes", "create", "--name", "kept", "--region", "test-1", "--size-tib", "1",
                "--no-lifecycle-independent", "--json")  # fmt: skip
    assert other.code == 0 and other.json()["volume_name"] == "kept"
    listed = cli("volumes", "list", "--json").json()["volumes"]
    assert {v["volume_name"] for v in listed} >= {"scratch", "kept"}
    assert volume_id in cli("volumes", "list").out
    grown = cli("volumes", "resize", volume_id, "--size-tib", "3", "--json")
    assert grown.code == 0 and grown.json()["size_tib"] == 3
    shown = cli("volumes", "get", volume_id)
    assert shown.code == 0 and shown.out.splitlines()[1].split()[:3] == [volume_id, "scratch", "3"]
    removed = cli("volumes", "delete", volume_id)
    assert removed.code == 0 and removed.out.strip() == f"volume {volume_id} deleted"
    assert cli("volumes", "delete", other.json()["volume_id"], "--json").json() == {"success": True}
    deadline = time.monotonic() + 30  # a deleted volume shows `deleting` until it is gone
    while (gone := cli("volumes", "get", volume_id)).code != 3 and time.monotonic() < deadline:
        assert gone.code == 0 and "deleting" in gone.out
        time.sleep(0.5)
    assert gone.code == 3


def recommend(server: ServerProcess, cluster_id: str, instance_id: str, reason: str) -> str:
    """An automated proposal (PENDING_APPROVAL), as the health checks raise them."""
    with server.client() as admin:
        made = admin.post(
            f"/admin/v1/clusters/{cluster_id}/instances/{instance_id}/recommendations",
            json={"mode": "REMEDIATION_MODE_VM_ONLY", "reason": reason},
        )
    assert made.status_code == 200, made.text
    remediation_id: str = made.json()["id"]
    return remediation_id


def test_remediation_commands_review_the_inbox_and_request_repairs(
    server: ServerProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    owner = create_tenant(server, "reviewer")
    cli = cli_as(owner.api_key, server, capsys, monkeypatch)
    created = cli("clusters", "create", "--name", "repairs", "--num-gpus", "16", *H100, *FAST,
                  "--json")  # fmt: skip
    assert created.code == 0, created.err
    cluster = created.events()[-1]["cluster"]
    cluster_id = cluster["cluster_id"]
    first, second = cluster["gpu_worker_nodes"]

    assert cli("remediations", "inbox").out.strip().split() == [
        "ID", "CLUSTER_ID", "NODE", "MODE", "STATE", "TRIGGER", "REASON", "CREATED",
    ]  # fmt: skip
    proposed = recommend(server, cluster_id, first["instance_id"], "xid-79")
    inbox = cli("remediations", "inbox")
    row = inbox.out.splitlines()[1].split()
    assert row[:7] == [proposed, cluster_id, first["node_id"], "VM_ONLY", "PENDING_APPROVAL",
                       "AUTOMATED", "xid-79"]  # fmt: skip
    only = cli("remediations", "inbox", "--cluster", cluster_id, "--json").json()
    assert [r["id"] for r in only["remediations"]] == [proposed]

    rejected = cli("remediations", "reject", cluster_id, proposed, "--comment", "not now", "--json")
    assert rejected.code == 0
    assert (rejected.json()["state"], rejected.json()["review_comment"]) == ("CANCELLED", "not now")
    assert cli("remediations", "inbox", "--json").json() == {"remediations": []}

    again = recommend(server, cluster_id, first["instance_id"], "xid-79 again")
    approved = cli("remediations", "approve", cluster_id, again, "--mode", "reboot_vm")
    assert approved.code == 0, approved.err
    assert (
        "State:           PENDING" in approved.out and "Mode:            REBOOT_VM" in approved.out
    )
    assert "Reviewed by:     reviewer" in approved.out

    waiting = recommend(server, cluster_id, second["instance_id"], "ecc")
    cancelled = cli("remediations", "cancel", cluster_id, waiting, "--json")
    assert cancelled.code == 0 and cancelled.json()["state"] == "CANCELLED"
    assert cli("remediations", "cancel", cluster_id, waiting).code == 3, "cancelled already"

    asked = cli("remediations", "create", cluster_id, second["host_name"], "--mode", "REBOOT_VM",
                "--reason", "hung", "--json")  # fmt: skip
    assert asked.code == 0, asked.err
    manual = asked.json()
    assert (manual["instance_id"], manual["trigger"]) == (
        second["instance_id"], "REMEDIATION_TRIGGER_MANUAL",
    )  # fmt: skip
    listed = cli("remediations", "list", cluster_id, "--json").json()["remediations"]
    assert {r["id"] for r in listed} == {proposed, again, waiting, manual["id"]}
    ended = cli("remediations", "list", cluster_id, "--state", "CANCELLED")
    assert sorted(line.split()[0] for line in ended.out.splitlines()[1:]) == sorted(
        [proposed, waiting]
    )
    shown = cli("remediations", "get", cluster_id, manual["id"])
    assert shown.code == 0 and f"Remediation:     {manual['id']}" in shown.out
    assert "Reason:          hung" in shown.out
    unknown = cli("remediations", "create", cluster_id, "no-such-node", "--mode", "VM_ONLY")
    assert unknown.code == 3 and "has no GPU worker 'no-such-node'" in unknown.err
