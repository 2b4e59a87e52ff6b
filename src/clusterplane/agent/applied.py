"""What the agent has applied to its host, persisted in the state directory.

`applied.json` records every user, mount, secret, runtime and host-name change the agent
made for the current cluster, written after each step. A restarted agent reads it, so it
converges without doing anything twice, and a released host is cleaned of exactly what
the agent made (never of accounts or mounts it found there).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from .identity import read_json, write_json

FILE = "applied.json"


class AppliedUser(BaseModel):
    uid: int
    gid: int
    home: str
    created_home: bool = False


class Applied(BaseModel):
    cluster_id: str | None = None
    generation: int = -1
    original_hostname: str | None = None
    hostname: str | None = None
    users: dict[str, AppliedUser] = Field(default_factory=dict)
    # Accounts the host already had that serve the cluster: used, never changed or removed.
    existing: list[str] = Field(default_factory=list)
    mounts: list[str] = Field(default_factory=list)
    ssh_ca: bool = False
    secrets: list[str] = Field(default_factory=list)
    runtimes: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return (
            not (self.users or self.mounts or self.ssh_ca or self.secrets or self.runtimes)
            and self.hostname is None
        )


class AppliedStore:
    def __init__(self, state_dir: Path):
        self.path = state_dir / FILE
        data = read_json(self.path)
        self.value = Applied.model_validate(data) if data else Applied()

    def save(self) -> None:
        write_json(self.path, self.value.model_dump(mode="json"))
