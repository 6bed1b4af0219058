"""The gateway's error hierarchy.

Theory of operation: every failure a caller can see is one of these classes. Foreign
exceptions (sockets, h11, JSON) are mapped to them at the boundary where they happen, and
they are rendered to the wire in exactly one place, ``_protocol._error_bodies``, which
knows the caller's protocol and whether the response has been committed.

Each class carries a ``status_hint`` (the HTTP status while nothing is committed) and an
``error_type`` (a protocol-neutral name the renderer maps to each dialect's type string).
This module is pure: no I/O, no formatting of wire bodies.
"""

from __future__ import annotations

from typing import ClassVar, Literal

__all__ = [
    "ClientError",
    "ConfigError",
    "Forbidden",
    "GatewayError",
    "HeadersTooLarge",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "ShuttingDown",
    "Unauthorized",
    "UnknownModel",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]

TimeoutPhase = Literal["connect", "first_byte", "data_interval", "drain", "shutdown"]


class ConfigError(Exception):
    """The configuration is invalid; raised only at start-up.

    The message names the key path (``upstreams[0].base_url``) and never contains a
    secret value. Deliberately not a :class:`GatewayError`: it never reaches a caller.
    """


class GatewayError(Exception):
    """Base class of every error a caller can receive.

    Attributes:
        message: human-readable text, safe to show to the caller (no secrets, no hosts).
    """

    status_hint: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status to answer with while the response is not committed."""
        return self.status_hint

    @property
    def retry_after(self) -> str | None:
        """A ``retry-after`` header value to pass on, if any."""
        return None


class ClientError(GatewayError):
    """The caller's request cannot be served as sent (4xx)."""

    status_hint = 400
    error_type = "invalid_request_error"


class InvalidRequest(ClientError):
    """Malformed JSON or an invalid field; ``param`` names the field when known."""

    status_hint = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Unauthorized(ClientError):
    """No key, or a key the gateway does not know. Never raised for upstream 401s."""

    status_hint = 401
    error_type = "authentication_error"


class Forbidden(ClientError):
    """The key is valid but may not use this model."""

    status_hint = 403
    error_type = "permission_error"


class UnknownModel(ClientError):
    """The requested model is not configured."""

    status_hint = 404
    error_type = "not_found_error"


class NotFound(ClientError):
    """No such route."""

    status_hint = 404
    error_type = "not_found_error"


class MethodNotAllowed(ClientError):
    """The route exists but not for this HTTP method; ``allow`` lists the methods it
    accepts (sent as the ``Allow`` header, RFC 9110 §15.5.6)."""

    status_hint = 405
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class HeadersTooLarge(ClientError):
    """The request headers exceed ``server.max_header_bytes``."""

    status_hint = 431
    error_type = "invalid_request_error"


class PayloadTooLarge(ClientError):
    """The request body or headers exceed the configured limits."""

    status_hint = 413
    error_type = "request_too_large"


class RateLimited(ClientError):
    """A gateway limit (budget or concurrency) refused the request before any upstream call.

    Not raised for upstream 429s: those are :class:`UpstreamStatusError` with status 429.
    """

    status_hint = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> str | None:
        if self._retry_after is None:
            return None
        return str(max(1, round(self._retry_after)))


class ServiceUnavailable(GatewayError):
    """The gateway is shutting down or shedding load."""

    status_hint = 503
    error_type = "overloaded_error"


class ShuttingDown(ServiceUnavailable):
    """The graceful shutdown ended a request still in flight (its ledger outcome is
    ``interrupted``)."""


class UpstreamError(GatewayError):
    """Someone else's fault: the upstream failed or misbehaved (5xx, or its own status)."""

    status_hint = 502
    error_type = "api_error"


class UpstreamUnavailable(UpstreamError):
    """Connecting to the upstream failed, or the connection broke before a response."""

    status_hint = 502
    error_type = "api_error"


class UpstreamProtocolError(UpstreamError):
    """The upstream sent malformed HTTP, SSE or JSON, an oversized event, or ended a
    stream before its terminal event."""

    status_hint = 502
    error_type = "api_error"


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; the caller gets that same status.

    ``message`` is already sanitised (no upstream key, host or internal detail).
    ``upstream_error_type`` is the protocol-neutral type derived from the status.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        should_retry: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self._status = status
        #: The status the upstream really sent (a 401 reaches the caller as 502).
        self.upstream_status = status if upstream_status is None else upstream_status
        self._retry_after = retry_after
        self.retry_after_ms = retry_after_ms
        self.should_retry = should_retry

    @property
    def status(self) -> int:
        return self._status

    @property
    def retry_after(self) -> str | None:
        return self._retry_after


class UpstreamTimeout(UpstreamError):
    """An upstream deadline passed: ``phase`` says which one (``connect``, ``first_byte``,
    ``data_interval``, ``drain``, ``shutdown``)."""

    status_hint = 504
    error_type = "timeout_error"

    def __init__(self, message: str, *, phase: TimeoutPhase) -> None:
        super().__init__(message)
        self.phase: TimeoutPhase = phase
