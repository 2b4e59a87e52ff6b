"""Every change the agent makes to its host, behind one small object with a root prefix.

`HostOps(root)` reads and writes files, the account databases (`etc/passwd`, `etc/group`,
`etc/shadow`), bind mounts and the host name under `root`: "/" on a real host, a temporary
directory in tests (mounts and the kernel host name are real operations, so tests that
use them run inside private mount and UTS namespaces). Every operation is idempotent: it
says whether it changed anything, and doing it twice changes nothing the second time.

Accounts are edited as files (atomic rename), so the same code runs against any root;
the agent only ever removes accounts it created itself (see `users`).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from .identity import write_atomic


def _unescape_mount(path: str) -> str:
    """A mount point as /proc/self/mountinfo writes it (octal escapes) back to text."""
    return path.encode().decode("unicode_escape")


def _same_directory(one: Path, other: Path) -> bool:
    first, second = one.stat(), other.stat()
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


class HostOps:
    def __init__(self, root: str | Path = "/", *, set_kernel_hostname: bool = True):
        self.root = Path(root)
        self.set_kernel_hostname = set_kernel_hostname

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    # files ---------------------------------------------------------------------------
    def read(self, absolute: str) -> str | None:
        try:
            return self.path(absolute).read_text()
        except FileNotFoundError:
            return None

    def write(self, absolute: str, content: str, mode: int = 0o644) -> bool:
        if self.read(absolute) == content and self._mode(absolute) == mode:
            return False
        write_atomic(self.path(absolute), content.encode(), mode)
        return True

    def _mode(self, absolute: str) -> int:
        return self.path(absolute).stat().st_mode & 0o7777

    def remove(self, absolute: str) -> bool:
        try:
            self.path(absolute).unlink()
        except FileNotFoundError:
            return False
        return True

    def makedirs(
        self, absolute: str, mode: int = 0o755, owner: tuple[int, int] | None = None
    ) -> bool:
        target = self.path(absolute)
        if target.is_dir():
            return False
        target.mkdir(parents=True, mode=mode)
        if owner is not None:
            os.chown(target, *owner)
        return True

    def remove_tree(self, absolute: str) -> bool:
        target = self.path(absolute)
        if not target.exists():
            return False
        for child in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if child.is_dir() and not child.is_symlink():
                child.rmdir()
            else:
                child.unlink()
        target.rmdir()
        return True

    # account databases -----------------------------------------------------------------
    def entries(self, database: str) -> list[list[str]]:
        text = self.read(f"/etc/{database}") or ""
        return [line.split(":") for line in text.splitlines() if line.strip()]

    def put_entry(self, database: str, fields: list[str]) -> bool:
        """Add or replace the entry named `fields[0]`; True if the file changed."""
        rows = self.entries(database)
        replaced = [fields if row[0] == fields[0] else row for row in rows]
        if fields not in replaced:
            replaced.append(fields)
        if replaced == rows:
            return False
        mode = 0o640 if database in ("shadow", "gshadow") else 0o644
        self.write(f"/etc/{database}", "".join(":".join(r) + "\n" for r in replaced), mode)
        return True

    def drop_entry(self, database: str, name: str) -> bool:
        rows = self.entries(database)
        kept = [row for row in rows if row[0] != name]
        if kept == rows:
            return False
        mode = 0o640 if database in ("shadow", "gshadow") else 0o644
        self.write(f"/etc/{database}", "".join(":".join(r) + "\n" for r in kept), mode)
        return True

    # mounts ------------------------------------------------------------------------------
    def mounted(self) -> set[str]:
        with open("/proc/self/mountinfo") as info:
            return {_unescape_mount(line.split()[4]) for line in info if line.strip()}

    def is_mounted(self, absolute: str) -> bool:
        return str(self.path(absolute)) in self.mounted()

    def bind_mount(self, source: Path, absolute: str) -> bool:
        """Bind `source` at `absolute` unless it is there already. Another filesystem
        mounted there (a /home partition) is not the source: the bind goes over it."""
        if self.is_mounted(absolute) and _same_directory(source, self.path(absolute)):
            return False
        self.makedirs(absolute)
        self.run(["mount", "--bind", str(source), str(self.path(absolute))])
        return True

    def unmount(self, absolute: str) -> bool:
        if not self.is_mounted(absolute):
            return False
        self.run(["umount", str(self.path(absolute))])
        return True

    # host name and commands ------------------------------------------------------------
    def set_hostname(self, name: str) -> bool:
        changed = self.write("/etc/hostname", name + "\n")
        if self.set_kernel_hostname and socket.gethostname() != name:
            socket.sethostname(name)
            changed = True
        return changed

    def run(self, command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise OSError(f"{' '.join(command)} failed: {done.stderr.strip() or done.returncode}")
        return done.stdout
