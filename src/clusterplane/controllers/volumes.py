"""The volume controller: drives each shared volume's status through the storage driver.

provisioning -> available (or bound while a cluster holds it) once the driver reports the
volume exists; a grown `size_tib` is passed to the driver until it reports the new size;
deleting -> gone once the driver has removed it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import VolumeRow
from clusterplane.domain.enums import VolumeStatus
from clusterplane.providers.models import DriverState, VolumeSpec
from clusterplane.services.events import record_event

from .base import ControllerContext

POLL = timedelta(seconds=5)


class VolumeController:
    name = "volumes"
    row_type = VolumeRow

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    def reconcile(self, row_id: str, token: str) -> None:
        with transaction(self.ctx.sessions) as session:
            row = session.get(VolumeRow, row_id)
            if row is None:
                return
            session.expunge(row)
        now = self.ctx.clock.now()
        spec = VolumeSpec(volume_id=row.id, region=row.region, size_tib=row.size_tib)
        provider = self.ctx.provider
        state: DriverState | None = row.provider_state
        gone = ready = False
        size = row.provisioned_size_tib
        if row.delete_requested_at is not None:
            if state is None:
                gone = True
            else:
                deletion = provider.delete_volume(spec, state, now)
                gone, state = deletion.done, deletion.state
        else:
            if state is None:
                state = provider.create_volume(spec, now)
            status = provider.describe_volume(spec, state, now)
            if status.ready and status.size_tib < row.size_tib:
                state = provider.resize_volume(spec, status.state, now)
            else:
                state = status.state
            ready, size = status.ready, status.size_tib if status.ready else 0
        with transaction(self.ctx.sessions) as session:
            live = leases.load_guarded(session, VolumeRow, row_id, token)
            if live is None:
                return
            self._apply(session, live, state, gone=gone, ready=ready, size=size, now=now)
            leases.release(live)

    @staticmethod
    def _apply(
        session: Session,
        row: VolumeRow,
        state: DriverState | None,
        *,
        gone: bool,
        ready: bool,
        size: int,
        now: datetime,
    ) -> None:
        row.provider_state = state
        if gone:
            row.deleted_at = now
            row.next_reconcile_at = None
            record_event(
                session,
                object_type="volume",
                object_id=row.id,
                kind="deleted",
                message="removed by the storage driver",
                at=now,
            )
            return
        if row.delete_requested_at is not None:
            row.next_reconcile_at = now + POLL
            return
        target = VolumeStatus.PROVISIONING
        if ready:
            target = VolumeStatus.BOUND if row.cluster_id else VolumeStatus.AVAILABLE
            row.provisioned_size_tib = size
        if row.status != target:
            record_event(
                session,
                object_type="volume",
                object_id=row.id,
                kind="status",
                message=f"{row.status} -> {target}",
                at=now,
            )
            row.status = target
            row.updated_at = now
        settled = ready and size >= row.size_tib
        row.next_reconcile_at = None if settled else now + POLL
