"""Safety rails of automatic repair, pure: when a signal may become a remediation.

* Opt-out: a node with `auto_remediation_enabled` false is never repaired automatically.
* One at a time: a node with an open remediation gets no second one (the signal is linked
  to the open one instead).
* Cooldown: no new automatic remediation of a node until `cooldown` after its last one
  ended (completed, failed or cancelled; spec §2.8).
* Stop rule: no automatic repair in a cluster while more than `max_unhealthy_share` of its
  workers is unhealthy (Cluster API's MachineHealthCheck `maxUnhealthy`); many nodes
  failing at once is more likely the fabric or the control plane than the nodes.
* Fleet cap: at most `fleet_cap(hosts, share)` nodes are being repaired at once.
* Project cap: at most `project_cap(setting, fleet cap)` of one project's nodes are being
  repaired at once, and one project never holds every slot of the fleet cap, so one
  tenant's repairs (requested or automatic) cannot make another tenant's wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SignalFacts:
    auto_remediation_enabled: bool
    has_open_remediation: bool
    last_ended_at: datetime | None
    unhealthy_workers: int
    workers: int


@dataclass(frozen=True)
class Hold:
    reason: str
    retry_at: datetime | None  # None: wait for something else to change (a nudge)


def over_stop_rule(unhealthy: int, workers: int, max_share: float) -> bool:
    return workers > 0 and unhealthy / workers > max_share


def stop_rule_message(unhealthy: int, workers: int, max_share: float) -> str:
    return (
        f"automatic repair stopped: {unhealthy} of {workers} GPU workers are unhealthy, "
        f"more than {max_share:.0%}"
    )


def hold_for(
    facts: SignalFacts, *, now: datetime, cooldown: timedelta, max_unhealthy_share: float
) -> Hold | None:
    """Why an automatic remediation must not be created now, or None when it may."""
    if not facts.auto_remediation_enabled:
        return Hold("automatic remediation is disabled on this node", None)
    if facts.has_open_remediation:
        return Hold("the node already has an open remediation", None)
    if facts.last_ended_at is not None and now < facts.last_ended_at + cooldown:
        until = facts.last_ended_at + cooldown
        return Hold(f"cooldown after the last remediation, until {until.isoformat()}", until)
    if over_stop_rule(facts.unhealthy_workers, facts.workers, max_unhealthy_share):
        message = stop_rule_message(facts.unhealthy_workers, facts.workers, max_unhealthy_share)
        return Hold(message, now + timedelta(minutes=1))
    return None


def fleet_cap(hosts: int, share: float) -> int:
    """How many nodes the whole fleet may have in repair at once (at least one)."""
    return max(1, math.floor(hosts * share))


def project_cap(max_project_repairs: int, fleet_cap: int) -> int:
    """How many of one project's nodes may be in repair at once (at least one): the
    operator's limit, leaving at least one slot of the fleet cap to the other projects."""
    return max(1, min(max_project_repairs, fleet_cap - 1))
