"""The reason clusterplane gives a scheduler for a drain or cordon, and reading it back.

Both flavours on agent hosts keep a drain's owner in the scheduler's own reason text (a
Slurm drain reason, a Kubernetes cordon annotation), so no state is kept beside it:
`reason_for(spec)` writes `clusterplane: <reason>`, or `clusterplane: on behalf of <who>:
<reason>` for someone else's drain, and `owner(reason)` reads who it was for. Agents
release only drains whose reason starts with `PREFIX`.
"""

from __future__ import annotations

from clusterplane.providers.models import DrainSpec

PREFIX = "clusterplane:"
OURS = PREFIX.rstrip(":")
BEHALF = "on behalf of"


def reason_for(spec: DrainSpec) -> str:
    """The scheduler's reason for `spec`'s drain: one line of at most 200 characters."""
    if spec.drained_by == OURS:
        reason = spec.reason if spec.reason.startswith(PREFIX) else f"{PREFIX} {spec.reason}"
    else:
        text = spec.reason
        if not text.startswith(f"{spec.drained_by}:"):
            text = f"{spec.drained_by}: {text}"
        reason = f"{PREFIX} {BEHALF} {text}"
    return " ".join(reason.split())[:200]


def owner(reason: str) -> str:
    """Whom a reason of `reason_for` drained for: OURS, or the party named after BEHALF."""
    rest = reason.removeprefix(PREFIX).strip()
    if rest.startswith(f"{BEHALF} ") and ":" in rest:
        return rest.removeprefix(f"{BEHALF} ").split(":", 1)[0].strip() or OURS
    return OURS
