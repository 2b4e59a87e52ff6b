"""The exception tree of clusterplane.

Every error a user can cause maps to one HTTP status and the spec's error envelope
(`{"error": {"message", "type", "param", "code"}}`); the API layer does that mapping in
one place (`api/errors.py`), so lower layers raise these and never think about HTTP.

    ClusterplaneError
    ├── InvalidRequest          400  bad input (`param` names the field)
    │   └── FailedPrecondition  400  valid input, but the object's state forbids it
    ├── Unauthenticated         401  missing or unknown API key
    ├── PermissionDenied        403  authenticated, not allowed
    │   └── QuotaExceeded       403  the project's GPU quota does not allow it
    ├── NotFound                404  unknown or invisible object
    ├── Conflict                409  deterministic conflict, never worth retrying
    ├── PayloadTooLarge         413  request body over the limit
    ├── TooManyRequests         429  too many of the key's requests in flight (retry later)
    ├── CapacityUnavailable     409  the fleet cannot satisfy the request right now
    └── ProviderError                a driver could not do what it was asked
        ├── TemporaryProviderError   "not yet": requeue after `delay_seconds`, fail nothing
        └── PermanentProviderError   the operation failed: the controller fails the node,
                                     step, drain or volume with the driver's message
"""

from __future__ import annotations


class ClusterplaneError(Exception):
    """Base of every error clusterplane raises on purpose."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ClusterplaneError):
    status_code = 400
    error_type = "invalid_request_error"


class FailedPrecondition(InvalidRequest):
    error_type = "failed_precondition"


class Unauthenticated(ClusterplaneError):
    status_code = 401
    error_type = "authentication_error"


class PermissionDenied(ClusterplaneError):
    status_code = 403
    error_type = "permission_denied"


class QuotaExceeded(PermissionDenied):
    """The operator's GPU limit for the project does not allow the request."""

    error_type = "quota_exceeded"


class NotFound(ClusterplaneError):
    status_code = 404
    error_type = "not_found"


class Conflict(ClusterplaneError):
    status_code = 409
    error_type = "conflict"


class PayloadTooLarge(ClusterplaneError):
    status_code = 413
    error_type = "request_too_large"


class TooManyRequests(ClusterplaneError):
    """The caller has too much going on at once; worth retrying after `retry_after_seconds`."""

    status_code = 429
    error_type = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_seconds: float = 1.0):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class CapacityUnavailable(ClusterplaneError):
    """The fleet has no room for the request; the message says what is available."""

    status_code = 409
    error_type = "capacity_unavailable"


class ProviderError(ClusterplaneError):
    """Raised by a driver verb; never seen by an API client (controllers catch it)."""


class TemporaryProviderError(ProviderError):
    """A driver's "not yet": the controller requeues the work after `delay_seconds` and
    records nothing as failed."""

    def __init__(self, message: str, *, delay_seconds: float = 5.0):
        super().__init__(message)
        self.delay_seconds = delay_seconds


class PermanentProviderError(ProviderError):
    """The operation cannot succeed: the controller fails it with this message."""
