"""What the contract tests share: persisting state as a controller does, and converging."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from clusterplane.providers.models import DriverState, Progress
from tests.contract.kits import Clock

P = TypeVar("P", bound=Progress)


def persisted(state: DriverState) -> DriverState:
    """The state as the controller hands it back: through JSON, as the database keeps it."""
    loaded = json.loads(json.dumps(state))
    assert isinstance(loaded, dict)
    return loaded


def converge(kit: Clock, poll: Callable[[DriverState, datetime], P], state: DriverState) -> P:
    """Poll with each returned state (persisted) until done; fail past the kit's horizon."""
    deadline = kit.now + kit.horizon
    progress = poll(persisted(state), kit.now)
    while not progress.done:
        assert not progress.failed, progress.message
        assert kit.now < deadline, "the operation did not finish within the horizon"
        progress = poll(persisted(progress.state), kit.advance())
    return progress
