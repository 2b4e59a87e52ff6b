"""Per-project GPU quotas: the operator's limits, and the check on create and scale-up.

A project without a quota row is unlimited. Usage is the `num_gpus` of the project's live
clusters (not deleted, no delete requested). The check locks the project's quota row
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's writers already queue), so concurrent
creates in one project cannot both slip under the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, ProjectQuotaRow, ProjectRow
from clusterplane.errors import InvalidRequest, NotFound, QuotaExceeded

MAX_QUOTA_GPUS = 10_000_000


@dataclass(frozen=True)
class QuotaView:
    project_id: str
    max_gpus: int | None  # None: no limit
    used_gpus: int

    def as_dict(self) -> dict[str, object]:
        return {
            "project_id": self.project_id,
            "max_gpus": self.max_gpus,
            "used_gpus": self.used_gpus,
            "remaining_gpus": None if self.max_gpus is None else self.max_gpus - self.used_gpus,
        }


def used_gpus(session: Session, project_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(ClusterRow.num_gpus), 0)).where(
            ClusterRow.project_id == project_id,
            ClusterRow.deleted_at.is_(None),
            ClusterRow.delete_requested_at.is_(None),
        )
    )
    return int(total or 0)


def check(session: Session, project_id: str, additional_gpus: int) -> None:
    """Raise `QuotaExceeded` if `additional_gpus` more would take the project over its quota."""
    if additional_gpus <= 0:
        return
    limit = session.scalar(
        select(ProjectQuotaRow.max_gpus)
        .where(ProjectQuotaRow.project_id == project_id)
        .with_for_update()
    )
    if limit is None:
        return
    used = used_gpus(session, project_id)
    if used + additional_gpus > limit:
        raise QuotaExceeded(
            f"project {project_id} has a quota of {limit} GPUs and uses {used}; "
            f"{additional_gpus} more would exceed it ({max(0, limit - used)} remaining)",
            param="num_gpus",
        )


def _project(session: Session, project_id: str) -> ProjectRow:
    row = session.get(ProjectRow, project_id)
    if row is None:
        raise NotFound(f"no project {project_id}", param="project_id")
    return row


def get_quota(session: Session, project_id: str) -> QuotaView:
    _project(session, project_id)
    row = session.get(ProjectQuotaRow, project_id)
    return QuotaView(
        project_id=project_id,
        max_gpus=row.max_gpus if row is not None else None,
        used_gpus=used_gpus(session, project_id),
    )


def set_quota(session: Session, project_id: str, max_gpus: int, *, now: datetime) -> QuotaView:
    """Set the project's limit; one below what it already uses only stops further growth."""
    _project(session, project_id)
    if not 0 <= max_gpus <= MAX_QUOTA_GPUS:
        raise InvalidRequest(
            f"max_gpus must be between 0 and {MAX_QUOTA_GPUS}, got {max_gpus}", param="max_gpus"
        )
    row = session.get(ProjectQuotaRow, project_id)
    if row is None:
        session.add(ProjectQuotaRow(project_id=project_id, max_gpus=max_gpus, updated_at=now))
    else:
        row.max_gpus = max_gpus
        row.updated_at = now
    session.flush()
    return get_quota(session, project_id)


def remove_quota(session: Session, project_id: str) -> QuotaView:
    """Drop the project's limit (idempotent)."""
    _project(session, project_id)
    row = session.get(ProjectQuotaRow, project_id)
    if row is not None:
        session.delete(row)
        session.flush()
    return get_quota(session, project_id)


def list_quotas(session: Session) -> list[QuotaView]:
    rows = session.scalars(select(ProjectQuotaRow).order_by(ProjectQuotaRow.project_id))
    return [QuotaView(r.project_id, r.max_gpus, used_gpus(session, r.project_id)) for r in rows]
