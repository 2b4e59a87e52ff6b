"""Logs of a real server process: `--log-format json` lines carry the request id (taken
from `X-Request-ID` when it is sane, generated otherwise, echoed either way) and the
project and cluster ids of the request; no API key ever reaches the log, good or bad."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from clusterplane.services.access.auth import generate_key_text
from tests.support.server import SMALL_FLEET, ServerProcess

CREATE = {
    "cluster_name": "logged",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def json_records(server: ServerProcess) -> list[dict[str, Any]]:
    lines = server.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def access_line(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    (line,) = [
        r for r in records if r["logger"] == "clusterplane.access" and r["request_id"] == request_id
    ]
    return line


def test_json_logs_carry_request_project_and_cluster_ids_and_never_a_key(tmp_path: Path):
    bad_key = generate_key_text()
    server = ServerProcess(
        tmp_path, fleet=SMALL_FLEET, extra_args=("--log-level", "info", "--log-format", "json")
    )
    with server, server.client() as client:
        created = client.post(
            "/v1/compute/clusters", json=CREATE, headers={"X-Request-ID": "create-1"}
        )
        assert created.status_code == 200, created.text
        assert created.headers["x-request-id"] == "create-1"
        cluster_id = created.json()["cluster_id"]
        got = client.get(f"/v1/compute/clusters/{cluster_id}", headers={"X-Request-ID": "get-1"})
        assert got.headers["x-request-id"] == "get-1"
        on_node = client.get(
            f"/v1/compute/clusters/{cluster_id}/instances/i-none/remediations",
            headers={"X-Request-ID": "node-1"},
        )
        assert on_node.headers["x-request-id"] == "node-1"
        refused = client.get(
            "/v1/compute/clusters",
            headers={"Authorization": f"Bearer {bad_key}", "X-Request-ID": "bad-key-1"},
        )
        assert refused.status_code == 401
        insane = client.get("/v1/whoami", headers={"X-Request-ID": "has spaces\tand tabs"})
        too_long = client.get("/v1/whoami", headers={"X-Request-ID": "x" * 129})
        anonymous = client.get("/healthz")
    generated = [r.headers["x-request-id"] for r in (insane, too_long, anonymous)]
    assert all(GENERATED_ID.fullmatch(rid) for rid in generated), generated
    assert len(set(generated)) == 3

    log = server.log_path.read_text()
    assert server.api_key is not None
    assert server.api_key not in log and bad_key not in log
    assert "Bearer" not in log

    records = json_records(server)
    create = access_line(records, "create-1")
    assert create["path"] == "/v1/compute/clusters" and create["status"] == 200
    assert create["method"] == "POST" and create["project_id"] and create["api_key_id"]
    get = access_line(records, "get-1")
    assert get["cluster_id"] == cluster_id and get["project_id"] == create["project_id"]
    node = access_line(records, "node-1")
    assert (node["cluster_id"], node["node_id"]) == (cluster_id, "i-none")
    bad = access_line(records, "bad-key-1")
    assert bad["status"] == 401 and "project_id" not in bad
    for rid in generated:
        assert access_line(records, rid)["status"] == 200


def test_text_logs_are_the_default_and_carry_the_request_id(tmp_path: Path):
    server = ServerProcess(tmp_path, fleet=SMALL_FLEET, extra_args=("--log-level", "info"))
    with server, server.client() as client:
        client.get("/v1/whoami", headers={"X-Request-ID": "text-1"})
    lines = server.log_path.read_text().splitlines()
    (line,) = [line for line in lines if "request_id=text-1" in line]
    assert "clusterplane.access: GET /v1/whoami 200" in line
    assert not any(line.startswith("{") for line in lines)
