"""`clusterplane admin ...` against a real server process: quotas, host state, API keys."""

from __future__ import annotations

import json

import pytest

from clusterplane.cli.main import main
from tests.support.server import ServerProcess


def _run(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = main(["admin", "--url", server.base_url, "--api-key", server.api_key, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _project_id(server: ServerProcess) -> str:
    with server.client() as client:
        project: str = client.get("/v3/whoami").json()["project"]["id"]
    return project


def test_the_operator_sets_lists_and_removes_quotas_from_the_command_line(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
):
    project = _project_id(server)
    code, out, _ = _run(server, capsys, "quotas", "set", project, "8")
    assert code == 0
    assert out.split("\n")[0].split()[:4] == [
        "PROJECT_ID",
        "MAX_GPUS",
        "USED_GPUS",
        "REMAINING_GPUS",
    ]
    assert out.split("\n")[1].split()[:4] == [project, "8", "0", "8"]
    with server.client() as client:
        refused = client.post(
            "/v1/compute/clusters",
            json={
                "cluster_name": "big",
                "billing_type": "ON_DEMAND",
                "gpu_type": "H100_SXM",
                "num_gpus": 16,
                "region": "test-1",
                "nvidia_version_id": "cu128-drv570-ubuntu2204",
            },
        )
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "quota_exceeded"
    code, out, _ = _run(server, capsys, "--json", "quotas", "list")
    assert code == 0
    [listed] = json.loads(out)["quotas"]
    assert (
        listed.items()
        >= {
            "project_id": project,
            "max_gpus": 8,
            "used_gpus": 0,
            "remaining_gpus": 8,
        }.items()
    )
    code, out, _ = _run(
        server,
        capsys,
        "--json",
        "quotas",
        "set",
        project,
        "--preemptible-gpus",
        "24",
        "--storage-tib",
        "30",
    )
    answer = json.loads(out)
    assert code == 0 and answer["max_gpus"] == 8, "a limit left out stays"
    assert (answer["max_preemptible_gpus"], answer["max_storage_tib"]) == (24, 30)
    code, out, _ = _run(server, capsys, "quotas", "set", project, "none", "--storage-tib", "none")
    assert code == 0
    header, row = out.split("\n")[:2]
    assert header.split()[4:] == [
        "MAX_PREEMPTIBLE_GPUS",
        "USED_PREEMPTIBLE_GPUS",
        "ALLOCATED_PREEMPTIBLE_GPUS",
        "MAX_STORAGE_TIB",
        "USED_STORAGE_TIB",
    ]
    assert row.split() == [project, "-", "0", "-", "24", "0", "0", "default", "0"]
    code, out, _ = _run(server, capsys, "--json", "quotas", "remove", project)
    assert code == 0 and json.loads(out)["max_gpus"] is None


def test_the_operator_drains_offlines_and_lists_hosts_from_the_command_line(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
):
    code, out, _ = _run(server, capsys, "hosts", "drain", "test1-r01-01")
    assert code == 0 and out.split("\n")[1].split()[5:7] == ["available", "True"]
    code, out, _ = _run(server, capsys, "hosts", "offline", "test1-r01-02")
    assert code == 0
    code, out, _ = _run(server, capsys, "--json", "hosts", "list", "--unplaceable")
    assert code == 0
    listed = {h["name"]: (h["state"], h["draining"]) for h in json.loads(out)["hosts"]}
    assert listed == {"test1-r01-01": ("available", True), "test1-r01-02": ("offline", False)}
    code, out, _ = _run(server, capsys, "hosts", "list", "--region", "test-1", "--draining")
    assert code == 0 and [line.split()[0] for line in out.strip().split("\n")[1:]] == [
        "test1-r01-01"
    ]
    code, out, _ = _run(server, capsys, "hosts", "online", "test1-r01-02")
    assert code == 0
    code, out, _ = _run(server, capsys, "hosts", "undrain", "test1-r01-01")
    assert code == 0
    code, out, _ = _run(server, capsys, "--json", "hosts", "list", "--unplaceable")
    assert json.loads(out)["hosts"] == []


def test_api_errors_print_the_servers_message_and_exit_1(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    code, out, err = _run(server, capsys, "hosts", "drain", "no-such-host")
    assert code == 1 and out == ""
    assert err.strip() == "clusterplane: no host no-such-host (HTTP 404)"
    code, _, err = _run(server, capsys, "hosts", "list", "--state", "broken")
    assert code == 1 and "state must be one of" in err
    code, _, err = _run(server, capsys, "quotas", "set", "nope", "8")
    assert code == 1 and "no project nope" in err
    monkeypatch.delenv("CLUSTERPLANE_ADMIN_API_KEY", raising=False)
    code = main(["admin", "--url", server.base_url, "quotas", "list"])
    assert code == 2


def test_the_operator_creates_lists_and_revokes_keys_from_the_command_line(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
):
    with server.client() as client:
        user = client.post("/admin/v1/users", json={"name": "ci"}).json()["id"]
    project = _project_id(server)
    code, out, _ = _run(
        server, capsys, "--json", "keys", "create", user, project, "--name", "ci",
        "--expires-in", "86400",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    assert created["expires_at"] is not None
    key_id, key = created["id"], created["api_key"]
    with server.client(key) as client:
        assert client.get("/v1/whoami").status_code == 200
    code, out, _ = _run(server, capsys, "keys", "list", "--user-id", user)
    assert code == 0
    assert out.split("\n")[0].split() == [
        "ID", "NAME", "USER_ID", "PROJECT_ID", "IS_ADMIN", "STATUS", "EXPIRES_AT",
    ]  # fmt: skip
    assert out.split("\n")[1].split()[:6] == [key_id, "ci", user, project, "False", "active"]
    assert key.split("_", 3)[3] not in out  # the secret (its url-safe text may hold "_")
    code, out, _ = _run(server, capsys, "keys", "revoke", key_id)
    assert code == 0 and "revoked" in out
    with server.client(key) as client:
        assert client.get("/v1/whoami").status_code == 401
    code, _, err = _run(server, capsys, "keys", "revoke", "key_0000000000000000")
    assert code == 1 and "not found" in err
