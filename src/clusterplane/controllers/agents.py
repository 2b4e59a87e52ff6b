"""The agent silence scan: hosts whose node agent went quiet become Unknown.

A due scan in the controllers' loop: at most once per `SCAN_EVERY` (wall time, from the
context's lease clock, since agents live on wall time), one indexed query finds agents
that are Ready but unheard for longer than `settings.agents.silence_grace_seconds`; each
is marked Unknown in its own transaction by `services.agents.agent_hosts.mark_unknown`, which
re-checks under a row lock (an agent that spoke meanwhile stays Ready). Silence only
records a health signal: nothing is terminated, reassigned or repaired here. The same
pass forgets request nonces older than the clock-skew window.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from clusterplane.db.engine import transaction
from clusterplane.services.agents import agent_auth, agent_hosts, agent_signals

from .base import ControllerContext

log = logging.getLogger(__name__)
SCAN_EVERY = timedelta(seconds=1)


class AgentSilenceScan:
    name = "agent_silence"

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx
        self._last_scan: datetime | None = None

    def scan(self) -> int:
        """Mark newly silent agents' hosts Unknown; how many were marked."""
        wall = self.ctx.lease_clock.now()
        if self._last_scan is not None and wall - self._last_scan < SCAN_EVERY:
            return 0
        self._last_scan = wall
        grace = self.ctx.settings.agents.silence_grace_seconds
        try:
            with transaction(self.ctx.sessions) as session:
                silent = agent_hosts.find_silent(
                    session,
                    grace_seconds=grace,
                    wall=wall,
                    limit=self.ctx.settings.engine.batch_size,
                )
                agent_auth.forget_old_nonces(session, now=wall)
        except Exception:
            log.exception("agent silence scan failed; the next pass tries again")
            return 0
        marked = 0
        for host_id in silent:
            try:
                with transaction(self.ctx.sessions) as session:
                    marked += agent_hosts.mark_unknown(
                        session, host_id, grace_seconds=grace, wall=wall, now=self.ctx.clock.now()
                    )
            except Exception:
                log.exception("could not mark host %s unknown; retried next scan", host_id)
        try:
            with transaction(self.ctx.sessions) as session:
                agent_signals.confirm_silent_nodes(
                    session,
                    self.ctx.settings,
                    now=self.ctx.clock.now(),
                    limit=self.ctx.settings.engine.batch_size,
                )
        except Exception:
            log.exception("could not confirm silent agents' nodes; retried next scan")
        return marked
