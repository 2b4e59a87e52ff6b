"""The volume controller: drives each shared volume's status through the storage driver.

provisioning -> available (or bound while a cluster holds it) once the driver reports the
volume exists; a grown `size_tib` is passed to the driver until it reports the new size;
deleting -> gone once the driver has removed it. A volume the driver fails
(`PermanentProviderError` or failed progress) is `failed`, the driver's message its event,
and is not looked at again until it is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import VolumeRow
from clusterplane.domain.enums import VolumeStatus
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.models import DriverState, Progress, VolumeSpec
from clusterplane.services.events.events import record_event, volume_scope

from .base import ControllerContext

POLL = timedelta(seconds=5)


@dataclass
class Acted:
    state: DriverState | None
    gone: bool = False
    ready: bool = False
    size: int = 0
    failed: str | None = None


def failed(progress: Progress) -> str | None:
    return (
        (progress.message or "the storage driver reported a failure") if progress.failed else None
    )


def _fail(session: Session, row: VolumeRow, message: str, now: datetime) -> None:
    record_event(
        session,
        object_type="volume",
        object_id=row.id,
        kind="failed",
        message=f"{row.status} -> {VolumeStatus.FAILED}: {message}",
        at=now,
        scope=volume_scope(row),
    )
    row.status = VolumeStatus.FAILED
    row.updated_at = now


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
        try:
            acted = self._act(row, now)
        except PermanentProviderError as exc:
            acted = Acted(row.provider_state, failed=exc.message)
        with transaction(self.ctx.sessions) as session:
            live = leases.load_guarded(session, VolumeRow, row_id, token)
            if live is None:
                return
            self._apply(session, live, acted, now)
            leases.release(live)

    def _act(self, row: VolumeRow, now: datetime) -> Acted:
        spec = VolumeSpec(volume_id=row.id, region=row.region, size_tib=row.size_tib)
        storage = self.ctx.drivers.storage_for(row.region)
        state: DriverState | None = row.provider_state
        if row.delete_requested_at is not None:
            if state is None:
                return Acted(None, gone=True)
            deletion = storage.delete_volume(spec, state, now)
            return Acted(deletion.state, gone=deletion.done, failed=failed(deletion))
        if state is None:
            state = storage.create_volume(spec, now).state
        status = storage.describe_volume(spec, state, now)
        if status.failed:
            return Acted(status.state, failed=failed(status))
        state = status.state
        if status.done and status.size_tib < row.size_tib:
            resized = storage.resize_volume(spec, status.state, now)
            state = resized.state
            if resized.failed:
                return Acted(state, failed=failed(resized))
        size = status.size_tib if status.done else 0
        return Acted(state, ready=status.done, size=size)

    @staticmethod
    def _apply(session: Session, row: VolumeRow, acted: Acted, now: datetime) -> None:
        row.provider_state = acted.state
        if acted.failed is not None and row.status != VolumeStatus.FAILED:
            _fail(session, row, acted.failed, now)
        if acted.failed is not None:
            row.next_reconcile_at = None
            return
        ready, size = acted.ready, acted.size
        if acted.gone:
            row.deleted_at = now
            row.next_reconcile_at = None
            record_event(
                session,
                object_type="volume",
                object_id=row.id,
                kind="deleted",
                message="removed by the storage driver",
                at=now,
                scope=volume_scope(row),
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
                scope=volume_scope(row),
            )
            row.status = target
            row.updated_at = now
        settled = ready and size >= row.size_tib
        row.next_reconcile_at = None if settled else now + POLL
