"""Clients that ask and never read: raw sockets for slow-reader tests against a real server.

A `StalledReader` connects with a small receive buffer, sends one GET and then reads
nothing, so the server's socket and transport buffers fill and its writes stall, as with a
hostile or wedged client. `status()` looks only at the first bytes, which have arrived by
then; `response()` reads a small answer whole.
"""

from __future__ import annotations

import socket
import time

import orjson

RECEIVE_BUFFER = 4096


class StalledReader:
    def __init__(self, port: int, path: str, key: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.connect(("127.0.0.1", port))
        head = f"GET {path} HTTP/1.1\r\nHost: clusterplane\r\nAuthorization: Bearer {key}\r\n"
        self.sock.sendall(head.encode() + b"\r\n")

    def status(self, timeout: float = 10.0) -> int:
        """The status code of the answer (its first line), without reading the rest."""
        head = self._peek_until(b"\r\n", timeout)
        return int(head.split(b" ", 2)[1])

    def response(self, timeout: float = 10.0) -> tuple[int, dict[str, str], object]:
        """A small answer read whole: status, headers, JSON body."""
        head = self._peek_until(b"\r\n\r\n", timeout).split(b"\r\n\r\n", 1)[0]
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
        size = len(head) + 4 + int(headers["content-length"])
        body = self._peek_until(b"", timeout, size=size)[len(head) + 4 : size]
        return int(lines[0].split(" ", 2)[1]), headers, orjson.loads(body)

    def cut_off(self, timeout: float = 10.0) -> tuple[bool, int]:
        """Read everything now: (whether the server closed or reset the connection before
        `timeout`, bytes received)."""
        self.sock.settimeout(timeout)
        received = 0
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return True, received
                received += len(chunk)
        except ConnectionResetError:
            return True, received
        except TimeoutError:
            pass
        return False, received

    def close(self) -> None:
        self.sock.close()

    def _peek_until(self, marker: bytes, timeout: float, size: int = 0) -> bytes:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(max(size, RECEIVE_BUFFER), socket.MSG_PEEK)
            if (marker and marker in data) or (size and len(data) >= size):
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer head within {timeout} s: {data[:80]!r}")
            time.sleep(0.05)
