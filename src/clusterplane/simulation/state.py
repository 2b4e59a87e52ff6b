"""How the simulated drivers fail: state they cannot read is a permanent failure.

A driver must never crash a controller with a `KeyError`: a state it does not understand
(corrupted, or written by another driver) fails the operation with a message saying so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from clusterplane.errors import PermanentProviderError

P = ParamSpec("P")
R = TypeVar("R")


def reads_state(verb: Callable[P, R]) -> Callable[P, R]:
    """Turn a verb's failure to read its state into a `PermanentProviderError`."""

    @functools.wraps(verb)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return verb(*args, **kwargs)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise PermanentProviderError(
                f"{verb.__name__}: unreadable driver state ({exc!r})"
            ) from exc

    return wrapper
