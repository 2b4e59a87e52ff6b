"""The fleet clock's anchor in the database: one fleet time for every replica and restart.

The anchor is (fleet time, wall time, scale). A server starting with the same scale reads
fleet time off the stored anchor, so replicas agree and a restart continues the clock; one
starting with another scale re-anchors at the fleet time the old anchor gives now, so fleet
time never jumps backwards. Replicas running side by side must share `--time-scale`.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy.orm import Session

from clusterplane.clock import ScaledClock, utc
from clusterplane.db.rows import ServerStateRow

ANCHOR_KEY = "fleet_clock_anchor"


def resume_clock(session: Session, *, time_scale: float, wall_now: datetime) -> ScaledClock:
    row = session.get(ServerStateRow, ANCHOR_KEY)
    if row is not None:
        anchor = orjson.loads(row.value)
        stored = ScaledClock(
            float(anchor["scale"]),
            fleet_origin=utc(datetime.fromisoformat(anchor["fleet"])),
            wall_origin=utc(datetime.fromisoformat(anchor["wall"])),
        )
        if stored.time_scale == time_scale:
            return stored
        fleet_now = stored.now()
    else:
        row = ServerStateRow(key=ANCHOR_KEY, value="")
        session.add(row)
        fleet_now = wall_now
    clock = ScaledClock(time_scale, fleet_origin=fleet_now, wall_origin=wall_now)
    row.value = orjson.dumps(
        {"fleet": fleet_now.isoformat(), "wall": wall_now.isoformat(), "scale": time_scale}
    ).decode()
    return clock
