"""Why a request was refused; each transport maps these to its own status (401/403, gRPC)."""

from __future__ import annotations

from tabserve.service.core.errors import ServiceError


class UnauthenticatedError(ServiceError):
    """No key, a malformed credential, or a key the keys file does not hold (HTTP 401).

    `reason` labels `tabserve_auth_refusals_total`: `missing`, `malformed` or `unknown`.
    """

    code = "unauthenticated"

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ForbiddenError(ServiceError):
    """A valid key without the scope the route needs (HTTP 403); names both."""

    code = "forbidden"
    reason = "scope"

    def __init__(self, message: str, key_name: str) -> None:
        super().__init__(message)
        self.key_name = key_name


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message names the file and the entry."""
