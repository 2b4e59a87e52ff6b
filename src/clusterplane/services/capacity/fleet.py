"""The fleet in the database: loading fleet files, syncing hosts and regions, the catalogue.

A fleet file is the operator's description of regions, fabrics, racks and hosts. Syncing is
idempotent and safe with clusters running: new hosts become available, changed hosts get
their new facts, hosts gone from the file are taken out of service (offline) unless they
are serving a cluster, in which case they stay allocated and are never handed out again.
Hosts that joined by node-agent enrollment (`services.agents.agent_hosts`) are not the file's to
retire: syncing leaves them alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, reader_of
from clusterplane.db.rows import AgentHostRow, HostRow, RegionRow
from clusterplane.domain.enums import HostState
from clusterplane.domain.fleet import Fleet, HostSpec, parse_fleet
from clusterplane.errors import InvalidRequest
from clusterplane.services.capacity import placement_cache

# libyaml's safe loader when the wheel has it: parses a large fleet file ten times faster
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_fleet_file(path: Path | None) -> Fleet:
    """Parse `path`, or the built-in fleet when None; bad files raise InvalidRequest."""
    if path is None:
        text = resources.files("clusterplane.fleets").joinpath("default.yaml").read_text()
        source = "built-in fleet"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidRequest(f"cannot read fleet file {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{source}: not valid YAML: {exc}") from exc
    return parse_fleet(data)


def host_id_for(name: str) -> str:
    return "host_" + hashlib.sha256(name.encode()).hexdigest()[:16]


HOST_FACTS = (
    "region",
    "fabric",
    "block",
    "rack",
    "gpu_type",
    "num_gpus",
    "num_cpu_cores",
    "memory_gib",
    "ib_hca_count",
    "ib_hca_type",
    "nvswitch_count",
    "nvswitch_type",
    "ephemeral_storage",
    "ip_address",
)


def _spec_values(spec: HostSpec) -> dict[str, object]:
    """A host's facts as the fleet file gives them, by column name (`HOST_FACTS`)."""
    return {
        "region": spec.region,
        "fabric": spec.fabric,
        "block": spec.block,
        "rack": spec.rack,
        "gpu_type": str(spec.gpu_type),
        "num_gpus": spec.num_gpus,
        "num_cpu_cores": spec.num_cpu_cores,
        "memory_gib": spec.memory_gib,
        "ib_hca_count": spec.ib_hca_count,
        "ib_hca_type": spec.ib_hca_type,
        "nvswitch_count": spec.nvswitch_count,
        "nvswitch_type": spec.nvswitch_type,
        "ephemeral_storage": spec.ephemeral_storage,
        "ip_address": spec.ip_address,
    }


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    retired: int


def sync_fleet(
    session: Session, fleet: Fleet, now: datetime, *, allow_cross_fabric: bool = False
) -> SyncReport:
    """Make the hosts table say what `fleet` says, writing only the hosts that changed.

    Runs on every start, and fleets hold thousands of hosts: the current facts are read as
    plain columns (not ORM rows), new hosts go in with one bulk insert, and a host whose
    facts, membership and state are unchanged is not written at all. A region may span
    fabrics when its fleet-file policy or `allow_cross_fabric` (the settings) says so.
    """
    for region in fleet.regions:
        region_row = session.get(RegionRow, region.name) or RegionRow(name=region.name)
        region_row.driver_versions = [dv.model_dump(mode="json") for dv in region.driver_versions]
        region_row.control_plane = region.control_plane.model_dump(mode="json")
        region_row.network = str(region.network)
        region_row.storage_capacity_tib = region.storage_tib
        region_row.allow_cross_fabric = (
            allow_cross_fabric or fleet.placement_for(region).allow_cross_fabric
        )
        session.add(region_row)
    columns = [getattr(HostRow, name) for name in HOST_FACTS]
    current = {
        row.name: row
        for row in session.execute(
            select(
                HostRow.id,
                HostRow.name,
                HostRow.state,
                HostRow.in_fleet_file,
                HostRow.cluster_id,
                *columns,
            )
            # Hosts that joined by enrollment are the agents', not the fleet file's.
            .where(HostRow.id.not_in(select(AgentHostRow.host_id)))
        ).all()
    }
    new_rows: list[dict[str, object]] = []
    changes: list[dict[str, object]] = []
    updated = 0
    for spec in fleet.hosts:
        facts = _spec_values(spec)
        row = current.pop(spec.name, None)
        if row is None:
            new_rows.append(
                {
                    "id": host_id_for(spec.name),
                    "name": spec.name,
                    "state": HostState.AVAILABLE,
                    "in_fleet_file": True,
                    "cluster_id": None,
                    "node_row_id": None,
                    "updated_at": now,
                    **facts,
                }
            )
            continue
        updated += 1
        delta = {k: v for k, v in facts.items() if getattr(row, k) != v}
        if not row.in_fleet_file:
            delta["in_fleet_file"] = True
            if row.state == HostState.OFFLINE and row.cluster_id is None:
                delta["state"] = HostState.AVAILABLE
        if delta:
            changes.append({"id": row.id, **delta, "updated_at": now})
    retired = 0
    for row in current.values():
        change: dict[str, object] = {}
        if row.in_fleet_file:
            retired += 1
            change["in_fleet_file"] = False
        if row.cluster_id is None and row.state != HostState.OFFLINE:
            change["state"] = HostState.OFFLINE
        if change:
            changes.append({"id": row.id, **change, "updated_at": now})
    if new_rows or changes:
        placement_cache.invalidate(session)
    if new_rows:
        session.execute(insert(HostRow), new_rows)
    for change in changes:
        host_id = change.pop("id")
        session.execute(
            update(HostRow)
            .where(HostRow.id == host_id)
            .values(**change)
            .execution_options(synchronize_session=False)
        )
    return SyncReport(added=len(new_rows), updated=updated, retired=retired)


def supported_instance_types(session: Session, region: str) -> list[str]:
    rows = session.scalars(
        select(HostRow.gpu_type)
        .distinct()
        .where(HostRow.region == region, HostRow.in_fleet_file.is_(True), HostRow.num_gpus > 0)
    )
    return sorted(rows)  # hosts without GPUs (control-plane hosts) offer no instance type


_OFFERS: Prepared[tuple[str]] = Prepared(
    select(HostRow.id)
    .where(
        HostRow.region == bindparam("region"),
        HostRow.gpu_type == bindparam("gpu_type"),
        HostRow.in_fleet_file.is_(True),
        HostRow.num_gpus > 0,
    )
    .limit(1),
    tuple,
)


def offers_instance_type(session: Session, region: str, gpu_type: str) -> bool:
    """Whether a host of the region's fleet has GPUs of `gpu_type`: an index probe that
    stops at the first such host, where `supported_instance_types` reads them all."""
    return bool(reader_of(session).all(_OFFERS, region=region, gpu_type=gpu_type))


def list_regions(session: Session) -> list[RegionRow]:
    return list(session.scalars(select(RegionRow).order_by(RegionRow.name)))
