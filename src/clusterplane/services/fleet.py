"""The fleet in the database: loading fleet files, syncing hosts and regions, the catalogue.

A fleet file is the operator's description of regions, fabrics, racks and hosts. Syncing is
idempotent and safe with clusters running: new hosts become available, changed hosts get
their new facts, hosts gone from the file are taken out of service (offline) unless they
are serving a cluster, in which case they stay allocated and are never handed out again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import HostRow, RegionRow
from clusterplane.domain.enums import HostState
from clusterplane.domain.fleet import Fleet, HostSpec, parse_fleet
from clusterplane.errors import InvalidRequest


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
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{source}: not valid YAML: {exc}") from exc
    return parse_fleet(data)


def host_id_for(name: str) -> str:
    return "host_" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _apply_spec(row: HostRow, spec: HostSpec) -> None:
    row.region, row.fabric, row.block, row.rack = spec.region, spec.fabric, spec.block, spec.rack
    row.gpu_type = str(spec.gpu_type)
    row.num_gpus, row.num_cpu_cores, row.memory_gib = (
        spec.num_gpus,
        spec.num_cpu_cores,
        spec.memory_gib,
    )
    row.ib_hca_count, row.ib_hca_type = spec.ib_hca_count, spec.ib_hca_type
    row.nvswitch_count, row.nvswitch_type = spec.nvswitch_count, spec.nvswitch_type
    row.ephemeral_storage, row.ip_address = spec.ephemeral_storage, spec.ip_address


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    retired: int


def sync_fleet(session: Session, fleet: Fleet, now: datetime) -> SyncReport:
    for region in fleet.regions:
        region_row = session.get(RegionRow, region.name) or RegionRow(name=region.name)
        region_row.driver_versions = [dv.model_dump(mode="json") for dv in region.driver_versions]
        region_row.control_plane = region.control_plane.model_dump(mode="json")
        region_row.network = str(region.network)
        session.add(region_row)
    existing = {h.name: h for h in session.scalars(select(HostRow))}
    added = updated = retired = 0
    for spec in fleet.hosts:
        row = existing.pop(spec.name, None)
        if row is None:
            row = HostRow(
                id=host_id_for(spec.name), name=spec.name, state=HostState.AVAILABLE, updated_at=now
            )
            session.add(row)
            added += 1
        else:
            updated += 1
            if not row.in_fleet_file and row.state == HostState.OFFLINE and row.cluster_id is None:
                row.state = HostState.AVAILABLE
        _apply_spec(row, spec)
        row.in_fleet_file = True
        row.updated_at = now
    for row in existing.values():
        if row.in_fleet_file:
            retired += 1
        row.in_fleet_file = False
        if row.cluster_id is None:
            row.state = HostState.OFFLINE
        row.updated_at = now
    return SyncReport(added=added, updated=updated, retired=retired)


def supported_instance_types(session: Session, region: str) -> list[str]:
    rows = session.scalars(
        select(HostRow.gpu_type)
        .distinct()
        .where(HostRow.region == region, HostRow.in_fleet_file.is_(True))
    )
    return sorted(rows)


def list_regions(session: Session) -> list[RegionRow]:
    return list(session.scalars(select(RegionRow).order_by(RegionRow.name)))
