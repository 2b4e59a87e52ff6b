"""The simulation's own table: the faults present on simulated hosts (ground truth).

Registered on the same metadata as `db.rows`; its schema is migration 0005's `host_faults`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from clusterplane.db.rows import Base


class HostFaultRow(Base):
    """The simulated fleet's ground truth: a fault present on a host until fixed."""

    __tablename__ = "host_faults"
    __table_args__ = (Index("ix_host_faults_open", "host_id", "cleared_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[int | None] = mapped_column(Integer)
    # The weakest repair that fixes it: gpu_reset, reboot or replace (hardware repair).
    fixed_by: Mapped[str] = mapped_column(String(16))
    injected_at: Mapped[datetime]
    clears_at: Mapped[datetime | None]  # a transient fault goes away by itself
    cleared_at: Mapped[datetime | None]
    # The health event the simulated node agent reported for it, once reported.
    event_id: Mapped[str | None] = mapped_column(String(64))
    deleted_at: Mapped[datetime | None]
    next_reconcile_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
