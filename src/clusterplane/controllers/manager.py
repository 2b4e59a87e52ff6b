"""Runs the controllers in a background thread until stopped; API writes nudge it.

Each loop first drains the health-signal controllers (the ones `app` plugs in, such as the
simulated agents' faults, then held signals; up to `SIGNAL_PASSES` batches), then runs one
pass of every other controller, then refreshes the stored cluster documents
(`controllers/documents.py`), then waits for the poll interval or a nudge, whichever comes
first. The webhook dispatcher, when given, runs beside them in its own thread (`start`,
`stop` and `nudge` reach it too), never inside a pass. `run_until_idle` drives the same
passes synchronously, which is how tests with a manual clock step the engine
deterministically.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from clusterplane.controllers.agents import AgentSilenceScan
from clusterplane.controllers.base import Controller, ControllerContext, run_pass
from clusterplane.controllers.clusters import ClusterController
from clusterplane.controllers.documents import DocumentRefresher
from clusterplane.controllers.health import CheckRunController, health_event_controller
from clusterplane.controllers.remediations import RemediationController
from clusterplane.controllers.volumes import VolumeController
from clusterplane.controllers.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)
SIGNAL_PASSES = 20  # at most this many batches of signals before the other controllers


class ControllerManager:
    def __init__(
        self,
        ctx: ControllerContext,
        *,
        signals: Sequence[Controller] = (),
        webhooks: WebhookDispatcher | None = None,
    ):
        self.ctx = ctx
        # Runs in its own thread, never inside `run_once`: no pass waits on a receiver.
        self.webhooks = webhooks
        # Health signals go first, drained before anything else runs: in a failure storm
        # the time from a signal to its node's exclusion is what matters most.
        self.signals: list[Controller] = [*signals, health_event_controller(ctx)]
        self.controllers: list[Controller] = [
            *self.signals,
            VolumeController(ctx),
            CheckRunController(ctx),
            RemediationController(ctx),
            ClusterController(ctx),
        ]
        self.agent_silence = AgentSilenceScan(ctx)
        self.documents = DocumentRefresher(ctx)
        self._nudge = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def nudge(self) -> None:
        self._nudge.set()
        if self.webhooks is not None:
            self.webhooks.nudge()

    def run_once(self) -> int:
        worked = 0
        for _ in range(SIGNAL_PASSES):
            done = sum(run_pass(controller, self.ctx) for controller in self.signals)
            worked += done
            if done == 0:
                break
        worked += self.agent_silence.scan()
        rest = [c for c in self.controllers if c not in self.signals]
        worked += sum(run_pass(controller, self.ctx) for controller in rest)
        return worked + self.documents.refresh()

    def run_until_idle(self, max_passes: int = 100) -> int:
        """Run passes until one finds nothing due; returns the number of passes."""
        for count in range(1, max_passes + 1):
            if self.run_once() == 0:
                return count
        return max_passes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="controllers", daemon=True)
        self._thread.start()
        if self.webhooks is not None:
            self.webhooks.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.webhooks is not None:
            self.webhooks.stop(timeout)

    def _loop(self) -> None:
        interval = self.ctx.settings.engine.poll_interval_seconds
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("controller loop pass failed")
                worked = 0
            if not worked:
                self._nudge.wait(interval)
            self._nudge.clear()
