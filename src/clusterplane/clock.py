"""Time for the whole engine: every timestamp and every due time comes from a `Clock`.

`SystemClock` is wall time. `ScaledClock` runs `time_scale` times faster than wall time and
never goes backwards across restarts (it resumes from a persisted high-water mark), so the
simulated fleet's 20-minute bring-up can run in seconds in a demo. `ManualClock` only
moves when a test advances it, which makes timing tests deterministic.
"""

from __future__ import annotations

import threading
import time
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
    """Fleet time that runs `time_scale` times faster than wall time, from `start`."""

    def __init__(self, time_scale: float, start: datetime | None = None):
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._origin_fleet = utc(start) if start is not None else datetime.now(UTC)
        self._origin_mono = time.monotonic()

    def now(self) -> datetime:
        elapsed = time.monotonic() - self._origin_mono
        return self._origin_fleet + timedelta(seconds=elapsed * self.time_scale)

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
