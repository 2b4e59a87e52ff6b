"""How progress of a followed cluster is shown (cli/progress.py drives them).

* `LineDisplay` (output is not a terminal): one line per phase change, then the outcome.
* `TerminalDisplay` (a terminal): the same lines, and under them one status line that is
  redrawn in place on every poll (status, nodes running, elapsed time).
* `JsonDisplay` (`--json`): JSON Lines: `{"event": "created", "cluster"}` for a create,
  `{"event": "phase", ...}` per change, and a last `{"event": OUTCOME, "message",
  "cluster"}` where OUTCOME is ready, failed, deleting, deleted or timeout.

A failure's message also goes to stderr as `clusterplane: ...`, whatever the display.
"""

from __future__ import annotations

import sys
from typing import TextIO

from clusterplane.cli import output
from clusterplane.cli.progress import RUNNING, Change, Cluster, Verdict, last_phase, nodes

SPINNER = "|/-\\"
CLEAR_LINE = "\r\x1b[K"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def change_line(change: Change) -> str:
    stamp = change.at.strftime("%Y-%m-%d %H:%M:%S")
    if change.node_id is None:
        status = f"  (status {change.status})" if change.status else ""
        return f"{stamp}  {'cluster':<28}  {output.short(change.phase)}{status}"
    subject = f"{change.role} {change.node_id}"
    return f"{stamp}  {subject:<28}  {output.short(change.phase)}  on {change.host_name}"


def headline(cluster: Cluster) -> str:
    return (
        f"Creating cluster {cluster['cluster_name']} ({cluster['cluster_id']}): "
        f"{cluster['num_gpus']} x {cluster['gpu_type']} in {cluster['region']}, "
        f"{cluster['cluster_type']}, {cluster['billing_type']}"
    )


def _outcome_line(verdict: Verdict, cluster: Cluster | None, elapsed: float) -> str:
    if verdict.outcome != "ready" or cluster is None:
        return verdict.message
    workers = len(cluster.get("gpu_worker_nodes") or [])
    plural = "" if workers == 1 else "s"
    return (
        f"{verdict.message}: {cluster['num_gpus']} GPUs on {workers} worker{plural} "
        f"({_clock(elapsed)})"
    )


def _report_failure(verdict: Verdict) -> None:
    if verdict.outcome != "ready":
        print(f"clusterplane: {verdict.message}", file=sys.stderr, flush=True)


class LineDisplay:
    def __init__(self, out: TextIO):
        self.out = out

    def created(self, cluster: Cluster) -> None:
        output.emit(self.out, headline(cluster))

    def change(self, change: Change) -> None:
        output.emit(self.out, change_line(change))

    def tick(self, cluster: Cluster, elapsed: float) -> None:
        pass

    def finish(self, verdict: Verdict, cluster: Cluster | None, elapsed: float) -> None:
        if verdict.outcome == "ready":
            output.emit(self.out, _outcome_line(verdict, cluster, elapsed))
        _report_failure(verdict)


class TerminalDisplay(LineDisplay):
    def __init__(self, out: TextIO):
        super().__init__(out)
        self.status = ""
        self.ticks = 0

    def _redraw(self) -> None:
        self.out.write(CLEAR_LINE + self.status)
        self.out.flush()

    def change(self, change: Change) -> None:
        self.out.write(CLEAR_LINE + change_line(change) + "\n")
        self._redraw()

    def tick(self, cluster: Cluster, elapsed: float) -> None:
        live = [n for _, n in nodes(cluster) if not n.get("deleted_at")]
        running = sum(1 for n in live if last_phase(n) == RUNNING)
        spin = SPINNER[self.ticks % len(SPINNER)]
        self.ticks += 1
        self.status = (
            f"{spin} {cluster.get('status')}  nodes running {running}/{len(live)}  "
            f"{_clock(elapsed)}"
        )
        self._redraw()

    def finish(self, verdict: Verdict, cluster: Cluster | None, elapsed: float) -> None:
        self.status = ""
        self._redraw()
        super().finish(verdict, cluster, elapsed)


class JsonDisplay:
    def __init__(self, out: TextIO):
        self.out = out

    def created(self, cluster: Cluster) -> None:
        output.emit(self.out, output.line({"event": "created", "cluster": cluster}))

    def change(self, change: Change) -> None:
        event = {
            "event": "phase",
            "transition_time": change.at.isoformat().replace("+00:00", "Z"),
            "phase": change.phase,
            "node_id": change.node_id,
            "role": change.role,
            "host_name": change.host_name,
            "status": change.status,
        }
        output.emit(self.out, output.line(event))

    def tick(self, cluster: Cluster, elapsed: float) -> None:
        pass

    def finish(self, verdict: Verdict, cluster: Cluster | None, elapsed: float) -> None:
        event = {"event": verdict.outcome, "message": verdict.message, "cluster": cluster}
        output.emit(self.out, output.line(event))
        _report_failure(verdict)


def pick(json: bool, out: TextIO) -> LineDisplay | JsonDisplay:
    if json:
        return JsonDisplay(out)
    return TerminalDisplay(out) if out.isatty() else LineDisplay(out)
