"""The documents refresher: stores the rendered response of each cluster that changed.

Every loop of the controllers, one indexed query finds the clusters whose stored document
is behind their revision or has expired (`services.clusters.cluster_documents.behind`).
A cluster is rendered once it has been quiet for a loop (its revision the same as the
loop before saw it): a cluster being brought up changes on every pass, and rendering its
thousands of nodes on each would take the passes' time for documents nobody reads yet
(a read of a cluster whose document is behind renders it on the spot). At most `BATCH`
clusters are rendered per loop, in one read snapshot and one write transaction.
"""

from __future__ import annotations

import logging

from clusterplane.db.prepared import read_snapshot
from clusterplane.services.clusters import cluster_documents

from .base import ControllerContext

log = logging.getLogger(__name__)
BATCH = 100  # documents rendered per loop
SCAN = 5_000  # clusters looked at per loop (busy ones must not hide the quiet ones)


class DocumentRefresher:
    name = "documents"

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx
        self._seen: dict[str, int] = {}  # behind at the last loop, with their revisions

    def refresh(self) -> int:
        """Render and store the documents of quiet clusters whose document is behind;
        how many were stored."""
        now = self.ctx.clock.now()
        try:
            with read_snapshot(self.ctx.sessions) as reader:
                behind = cluster_documents.behind(reader, now=now, limit=SCAN)
            quiet = [c for c, revision in behind.items() if self._seen.get(c) == revision]
            self._seen = behind
            if not quiet:
                return 0
            return cluster_documents.render_and_store(self.ctx.sessions, quiet[:BATCH], now=now)
        except Exception:
            log.exception("refreshing cluster documents failed; the next loop tries again")
            return 0
