"""The errors of SPEC section 4, one class per stable ``code``.

Every error answer of the server is ``{"error": {"code", "message", ...data}}``; :func:`error_of`
turns it into the matching exception, carrying the data (holders, ``retry_after``, the field of a
bad request). A server that can't be reached is :class:`StoreUnavailable`: nothing was granted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "HoldfastError", "Blocked", "LockBusy", "WaitTimeout", "LeaseLost", "NotFound", "InvalidRequest",
    "Unauthorized", "Forbidden", "StoreUnavailable", "Holder", "error_of", "parse_time",
]


def parse_time(value: Optional[str]) -> Optional[datetime]:
    """An ISO 8601 UTC time of an answer (``2026-01-02T03:04:05.678Z``) as an aware datetime."""
    if value is None:
        return None
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


@dataclass(frozen=True)
class Holder:
    """One blocker of a request: a live lease (``held``), a lock-delay (``delayed``) or an earlier waiter (``queued``)."""

    key: str
    mode: str
    owner: str
    state: str
    acquired_at: Optional[datetime]
    expires_at: Optional[datetime]
    metadata: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Holder":
        return cls(
            key=str(data.get("key", "")), mode=str(data.get("mode", "exclusive")), owner=str(data.get("owner", "")),
            state=str(data.get("state", "held")), acquired_at=parse_time(data.get("acquiredAt")),
            expires_at=parse_time(data.get("expiresAt")), metadata=dict(data.get("metadata") or {}),
        )


class HoldfastError(Exception):
    """Base of every holdfast error: ``code`` (stable), ``status`` (HTTP), ``message``, ``data`` (the answer's rest)."""

    code: str = "INTERNAL"
    status: int = 500

    def __init__(self, message: str, data: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.data: Dict[str, Any] = dict(data or {})


class Blocked(HoldfastError):
    """The request conflicts with live leases (or earlier waiters): who they are and when to try again."""

    def __init__(self, message: str, data: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message, data)
        self.holders: List[Holder] = [Holder.from_json(h) for h in self.data.get("holders") or [] if isinstance(h, Mapping)]
        retry = self.data.get("retryAfterMs")
        #: Upper bound of the time until the current blockers end unless renewed, in milliseconds.
        self.retry_after_ms: int = int(retry) if isinstance(retry, (int, float)) else 1000

    @property
    def retry_after(self) -> float:
        """``retry_after_ms`` in seconds."""
        return self.retry_after_ms / 1000.0


class LockBusy(Blocked):
    """A try-once request conflicts (HTTP 409 with ``Retry-After``)."""

    code = "LOCK_BUSY"
    status = 409


class WaitTimeout(Blocked):
    """The request waited ``wait_ms`` without a grant; nothing of it is left queued."""

    code = "WAIT_TIMEOUT"
    status = 409

    def __init__(self, message: str, data: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message, data)
        waited = self.data.get("waitedMs")
        self.waited_ms: int = int(waited) if isinstance(waited, (int, float)) else 0


class LeaseLost(HoldfastError):
    """The lease is no longer held: it expired, was released or force-released, or could not be renewed in time."""

    code = "LEASE_LOST"
    status = 410

    def __init__(self, message: str, data: Optional[Mapping[str, Any]] = None, lease_id: Optional[str] = None) -> None:
        super().__init__(message, data)
        self.lease_id = lease_id


class NotFound(HoldfastError):
    code = "NOT_FOUND"
    status = 404


class InvalidRequest(HoldfastError, ValueError):
    """Bad input, refused before anything changed: ``field`` says which, ``reason`` why."""

    code = "INVALID_REQUEST"
    status = 400

    def __init__(self, field: str, reason: str, data: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(f"Invalid `{field}`: {reason}", data)
        self.field = field
        self.reason = reason


class Unauthorized(HoldfastError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(HoldfastError):
    code = "FORBIDDEN"
    status = 403


class StoreUnavailable(HoldfastError):
    """The server (or its store) can't be reached, or answered something unusable: nothing was granted."""

    code = "STORE_UNAVAILABLE"
    status = 503


_BY_CODE = {c.code: c for c in (LockBusy, WaitTimeout, LeaseLost, NotFound, Unauthorized, Forbidden, StoreUnavailable)}


def error_of(status: int, body: Any) -> HoldfastError:
    """The exception of an error answer ``{"error": {"code", "message", ...}}`` with HTTP ``status``."""
    error = body.get("error") if isinstance(body, Mapping) else None
    data: Dict[str, Any] = dict(error) if isinstance(error, Mapping) else {}
    code = data.get("code")
    message = str(data.get("message") or f"HTTP {status}")
    if code == "INVALID_REQUEST":
        return InvalidRequest(str(data.get("field") or "request"), str(data.get("reason") or message), data)
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is not None:
        return cls(message, data)
    if status >= 500 or status == 0:
        return StoreUnavailable(f"the server answered {status}: {message}", data)
    return InvalidRequest("request", f"the server answered {status}: {message}", data)
