"""Wire dicts -> responses: encoded once by orjson, with the options every response shares.

The cluster, remediation and volume objects themselves are built in
`services/clusters/cluster_wire.py` (the cluster document is also stored rendered there);
they are re-exported here for the routers.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from clusterplane.services.clusters.cluster_wire import (
    JSON_OPTIONS,
    encode,
    linked_alert,
    remediation,
    volume,
)

__all__ = ["JSON_OPTIONS", "encode", "json_response", "linked_alert", "remediation", "volume"]


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(encode(body), status_code=status, media_type="application/json")
