"""A small client of a cluster's Kubernetes API server, for its control-plane runtime.

`KubeApi(server, ca, cert, key)` speaks HTTPS with a client certificate (files as this
process reaches them). It reads what the runtime reports (`ready`, `nodes`, `leases`,
`pods_on`) and does what clusterplane asks of the cluster: cordon and uncordon a node
(`set_unschedulable`, with the annotation that says clusterplane did it), evict a pod
through the Eviction API (which respects PodDisruptionBudgets) and delete a Node. Every
call has a timeout; failures raise `ApiError` with the server's message.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

TIMEOUT = 10.0
CORDONED_BY = "clusterplane.io/cordoned"  # annotation: clusterplane's reason for a cordon


class ApiError(RuntimeError):
    """The API server refused or did not answer; `status` is its HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class KubeApi:
    def __init__(self, server: str, ca_file: str, cert_file: str, key_file: str):
        context = ssl.create_default_context(cafile=ca_file)
        context.load_cert_chain(cert_file, key_file)
        self._client = httpx.Client(base_url=server, verify=context, timeout=TIMEOUT)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._call(method, path, **kwargs)
        if response.status_code >= 400:
            message = response.text[:300]
            raise ApiError(
                f"{method} {path}: {response.status_code} {message}", response.status_code
            )
        body = response.json()
        return body if isinstance(body, dict) else {}

    def ready(self) -> bool:
        try:
            response = self._call("GET", "/readyz")
        except ApiError:
            return False
        return response.status_code == 200 and response.text == "ok"

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/v1/nodes").get("items", []))

    def leases(self) -> dict[str, str]:
        """Each node's Lease renew time (RFC 3339, microseconds)."""
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        items = self._json("GET", path).get("items", [])
        return {
            item["metadata"]["name"]: item.get("spec", {}).get("renewTime") or "" for item in items
        }

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        params = {"fieldSelector": f"spec.nodeName={node}"}
        return list(self._json("GET", "/api/v1/pods", params=params).get("items", []))

    def set_unschedulable(self, node: str, reason: str | None) -> None:
        """Cordon `node` with clusterplane's `reason`, or (None) uncordon it."""
        patch = {
            "spec": {"unschedulable": reason is not None or None},
            "metadata": {"annotations": {CORDONED_BY: reason}},
        }
        self._json(
            "PATCH",
            f"/api/v1/nodes/{node}",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def evict(self, namespace: str, pod: str) -> bool:
        """Ask to evict a pod; False when a PodDisruptionBudget does not allow it now."""
        body = {
            "apiVersion": "policy/v1beta1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction"
        response = self._call("POST", path, json=body)
        if response.status_code == 429:
            return False
        if response.status_code >= 400 and response.status_code != 404:
            raise ApiError(f"evict {namespace}/{pod}: {response.status_code} {response.text[:300]}")
        return True

    def delete_node(self, node: str) -> None:
        response = self._call("DELETE", f"/api/v1/nodes/{node}")
        if response.status_code >= 400 and response.status_code != 404:
            raise ApiError(f"delete node {node}: {response.status_code} {response.text[:300]}")
