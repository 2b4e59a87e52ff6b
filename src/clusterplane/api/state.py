"""What the routers need from the composition root, handed over on `app.state.cp`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from clusterplane.api.console_stream import StreamSlots
from clusterplane.api.inflight import InFlight
from clusterplane.api.long_polls import LongPolls
from clusterplane.api.read_cache import ReadCache
from clusterplane.api.single_flight import SingleFlight
from clusterplane.clock import Clock, SystemClock
from clusterplane.db.group_commit import GroupCommit
from clusterplane.db.loop_reads import LoopReader
from clusterplane.db.writes import WriteCounter
from clusterplane.metrics import Metrics
from clusterplane.services.access.auth import Caller
from clusterplane.services.access.caller_cache import CallerCache
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.agents.agent_health import AgentReport
from clusterplane.services.health.health_reports import Report
from clusterplane.settings import Settings


@dataclass
class ApiState:
    sessions: sessionmaker[Session]
    clock: Clock
    settings: Settings
    nudge: Callable[[], None]
    secrets: SecretBox
    health_reports: GroupCommit[Report, dict[str, Any]]
    agent_health: GroupCommit[AgentReport, dict[str, Any]]
    # Real time, for what clients check against their own clocks (certificates, key
    # expiry); `clock` is fleet time, which may run faster.
    wall_clock: Clock = field(default_factory=SystemClock)
    callers: CallerCache = field(default_factory=CallerCache)
    logins: SingleFlight[Caller] = field(default_factory=SingleFlight)
    writes: WriteCounter = field(default_factory=WriteCounter)
    reads: ReadCache = field(default_factory=lambda: ReadCache(0))
    # One-statement reads the event loop runs itself (SQLite files only; db/loop_reads.py).
    loop_reads: LoopReader | None = None
    inflight: InFlight = field(default_factory=lambda: InFlight(0))
    # Signed agent requests in flight, per host.
    agent_inflight: InFlight = field(default_factory=lambda: InFlight(0))
    long_polls: LongPolls = field(
        default_factory=lambda: LongPolls(limit=2000, recheck_seconds=1.0)
    )
    # The registry `GET /metrics` renders (None: metrics are off).
    metrics: Metrics | None = None
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(per_key=3, total=500))
