"""Node agents' health signals, each ingested once whatever the agent re-sends.

An agent names every signal with its own stable key (`kmsg:<boot>:<seq>`,
`nvml:<uuid>:ecc:<count>`...) and re-sends signals the server may not have taken (it died
between the answer and its cursor write). `ingest_agent_reports` records each key with
the event it became, in the same transaction as the event, so a re-sent key answers the
original event (`Duplicate`) and writes nothing. Two replicas racing on one key collide on
the key's primary key; the group commit then writes each report alone and the loser
finds the winner's key.

Who calls it: the agent API's group commit (`api/routers/agents.py`); ingestion itself is
`services.health.health_reports`, exactly as for the operator's health API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import AgentHealthKeyRow, HealthEventRow
from clusterplane.errors import ClusterplaneError
from clusterplane.services.health import health_reports
from clusterplane.settings import Settings


@dataclass(frozen=True)
class AgentReport:
    host_id: str
    key: str
    report: health_reports.Report


@dataclass(frozen=True)
class Duplicate:
    """A signal ingested before: the event it became."""

    event_id: str


Outcome = HealthEventRow | Duplicate | ClusterplaneError


def _known(session: Session, items: Sequence[AgentReport]) -> dict[tuple[str, str], str]:
    known: dict[tuple[str, str], str] = {}
    by_host: dict[str, set[str]] = {}
    for item in items:
        by_host.setdefault(item.host_id, set()).add(item.key)
    for host_id, keys in by_host.items():
        rows = session.execute(
            select(AgentHealthKeyRow.key, AgentHealthKeyRow.event_id).where(
                AgentHealthKeyRow.host_id == host_id, AgentHealthKeyRow.key.in_(sorted(keys))
            )
        )
        known.update({(host_id, key): event_id for key, event_id in rows})
    return known


def ingest_agent_reports(
    session: Session, settings: Settings, items: Sequence[AgentReport], now: datetime
) -> list[Outcome]:
    """Each item's new event, the event its key became before, or the error refusing it."""
    known = _known(session, items)
    fresh: list[int] = []
    first_of: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        ref = (item.host_id, item.key)
        if ref not in known and ref not in first_of:
            first_of[ref] = index
            fresh.append(index)
    stored = health_reports.ingest_reports(session, settings, [items[i].report for i in fresh], now)
    outcome_of: dict[int, Outcome] = dict(zip(fresh, stored, strict=True))
    for index, result in zip(fresh, stored, strict=True):
        if isinstance(result, HealthEventRow):
            item = items[index]
            session.add(
                AgentHealthKeyRow(
                    host_id=item.host_id, key=item.key, event_id=result.id, created_at=now
                )
            )
    outcomes: list[Outcome] = []
    for index, item in enumerate(items):
        ref = (item.host_id, item.key)
        if index in outcome_of:
            outcomes.append(outcome_of[index])
        elif ref in known:
            outcomes.append(Duplicate(known[ref]))
        else:
            first = outcome_of[first_of[ref]]
            outcomes.append(Duplicate(first.id) if isinstance(first, HealthEventRow) else first)
    return outcomes
