"""Exit codes of the user commands (`clusters`, `volumes`, `remediations`, `completion`).

    0    done: the command did what it says (for `create`/`watch`: the cluster is Ready)
    2    usage: a bad command line, or no API key configured
    3    the API refused the request (4xx): bad input, unknown id, no access; the
         server's message is printed
    4    the server failed (5xx) or could not be reached
    5    the cluster failed while being followed: a node failed, or the cluster is being
         deleted or is gone
    6    `--timeout` passed before the cluster was Ready (or gone, for `delete --wait`)
    130  interrupted (Ctrl-C); the cluster keeps going on the server

`CliError` carries one of them with a one-line message; `cli/common.py` prints it.
docs/cli.md repeats this table for users.
"""

from __future__ import annotations

OK = 0
USAGE = 2
API_ERROR = 3
UNAVAILABLE = 4
CLUSTER_FAILED = 5
TIMED_OUT = 6
INTERRUPTED = 130


class CliError(Exception):
    """A failure a user command reports in one line and exits `code` for."""

    def __init__(self, code: int, message: str, body: object = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.body = body  # the server's error body, printed under --json
