"""`/v1/compute/regions`: the catalogue of regions, GPU types and driver versions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import api_state, current_caller
from clusterplane.api.schemas import RegionListResponse
from clusterplane.db.engine import read_transaction
from clusterplane.services.access.auth import Caller
from clusterplane.services.capacity import fleet

router = APIRouter(tags=["regions"])


@router.get("/compute/regions", response_model=RegionListResponse)
def list_regions(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        regions = [
            {
                "name": region.name,
                "supported_instance_types": fleet.supported_instance_types(session, region.name),
                "driver_versions": [
                    {
                        key: str(entry[key])
                        for key in ("id", "cuda_version", "nvidia_driver_version", "os")
                    }
                    for entry in region.driver_versions
                ],
            }
            for region in fleet.list_regions(session)
        ]
    return presenters.json_response({"regions": regions})
