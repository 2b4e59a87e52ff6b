"""What the routers need from the composition root, handed over on `app.state.cp`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from clusterplane.clock import Clock
from clusterplane.settings import Settings


@dataclass
class ApiState:
    sessions: sessionmaker[Session]
    clock: Clock
    settings: Settings
    nudge: Callable[[], None]
