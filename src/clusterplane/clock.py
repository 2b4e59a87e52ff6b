"""Time for the whole engine: every timestamp and every due time comes from a `Clock`.

`SystemClock` is wall time. `ScaledClock` runs `time_scale` times faster than wall time from
an anchor kept in the database, so replicas agree on fleet time and restarts continue it;
the simulated fleet's 20-minute bring-up can run in seconds in a demo. `ManualClock` only
moves when a test advances it, which makes timing tests deterministic.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


def utc(dt: datetime) -> datetime:
    """Return `dt` as an aware UTC datetime (naive values are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...

    def real_seconds(self, fleet_seconds: float) -> float:
        """How many wall-clock seconds `fleet_seconds` of this clock's time take."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds(self, fleet_seconds: float) -> float:
        return fleet_seconds


class ScaledClock:
    """Fleet time running `time_scale` times faster than wall time from an anchor.

    fleet_now = fleet_origin + (wall_now - wall_origin) * time_scale. The anchor is shared
    through the database (`services.capacity.fleet_clock`), so every replica reads the same fleet
    time off its own wall clock, and a restart continues where the fleet clock was.
    """

    def __init__(
        self,
        time_scale: float,
        *,
        fleet_origin: datetime | None = None,
        wall_origin: datetime | None = None,
    ):
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        wall = datetime.now(UTC)
        self.wall_origin = utc(wall_origin) if wall_origin is not None else wall
        self.fleet_origin = utc(fleet_origin) if fleet_origin is not None else self.wall_origin

    def now(self) -> datetime:
        elapsed = (datetime.now(UTC) - self.wall_origin).total_seconds()
        return self.fleet_origin + timedelta(seconds=elapsed * self.time_scale)

    def real_seconds(self, fleet_seconds: float) -> float:
        return fleet_seconds / self.time_scale


class ManualClock:
    """A clock that moves only when told; thread-safe."""

    def __init__(self, start: datetime | None = None):
        self._now = utc(start) if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = utc(when)

    def real_seconds(self, fleet_seconds: float) -> float:
        return 0.0
