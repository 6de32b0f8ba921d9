"""Values of the API as Python sees them: durations, resources, lease records, and the defaults."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .errors import InvalidRequest, parse_time

#: Defaults of :class:`holdfast.Client`, in one read-only mapping.
DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "ttl_ms": 30_000,  # the server's default lease length
    "wait_ms": 0,  # try once
    "timeout": 30.0,  # seconds allowed for an answer, beyond a wait the server holds open
    "auto_renew": True,  # renew held leases at a third of their TTL
    "safety_margin_ms": None,  # None: a tenth of the TTL, 50 ms..2 s
})

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
LEASE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

#: A duration: milliseconds (int or float), a ``timedelta``, or a string like ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``.
Duration = Union[int, float, str, timedelta]


def duration_ms(value: Duration, field_name: str, minimum: int = 0, maximum: int = 604_800_000) -> int:
    """Whole milliseconds of ``value``; :class:`InvalidRequest` naming ``field_name`` when it is not one or out of range."""
    if isinstance(value, bool):
        raise InvalidRequest(field_name, f"expected a duration (milliseconds or a string like 30s), got {value!r}")
    if isinstance(value, timedelta):
        ms = round(value.total_seconds() * 1000)
    elif isinstance(value, (int, float)):
        if value != value or value < 0 or value == float("inf"):
            raise InvalidRequest(field_name, f"expected a non-negative number of milliseconds, got {value!r}")
        ms = round(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise InvalidRequest(field_name, f"expected a duration like 500ms, 30s, 5m or 2h, got {value!r}")
        ms = round(float(match.group(1)) * _UNIT_MS[match.group(2) or "ms"])
    else:
        raise InvalidRequest(field_name, f"expected a duration (milliseconds or a string like 30s), got {type(value).__name__}")
    if ms < minimum or ms > maximum:
        raise InvalidRequest(field_name, f"expected {minimum}..{maximum} ms, got {ms}")
    return ms


def safety_margin_s(ttl_ms: int, configured_ms: Optional[int]) -> float:
    """How long before the store's expiry a lease that cannot renew considers itself lost (the TS client's rule)."""
    if configured_ms is not None:
        return min(configured_ms, ttl_ms / 2) / 1000.0
    return min(2000.0, max(50.0, ttl_ms / 10)) / 1000.0


@dataclass(frozen=True)
class Resource:
    """One locked key: ``mode`` is ``exclusive`` or ``shared``; ``limit`` caps shared holders of the key (a semaphore)."""

    key: str
    mode: str = "exclusive"
    limit: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"key": self.key, "mode": self.mode}
        if self.limit is not None:
            out["limit"] = self.limit
        return out


ResourceInput = Union[str, Resource, Mapping[str, Any]]
KeyOrResources = Union[str, Resource, Iterable[ResourceInput]]


def shared(key: str, limit: Optional[int] = None) -> Resource:
    """A shared resource (``limit``: at most that many shared holders)."""
    return Resource(key, "shared", limit)


def resources_of(target: KeyOrResources, mode: Optional[str], limit: Optional[int]) -> List[Dict[str, Any]]:
    """The ``resources`` of a request body from a key, a :class:`Resource`, or a list of keys, resources and dicts."""
    if isinstance(target, (str, Resource)):
        one = Resource(target, mode or "exclusive", limit) if isinstance(target, str) else target
        if not isinstance(target, str) and (mode is not None or limit is not None):
            raise InvalidRequest("mode" if mode is not None else "limit", "only with a single key string; give it inside the Resource")
        return [one.to_json()]
    if mode is not None or limit is not None:
        raise InvalidRequest("mode" if mode is not None else "limit", "only with a single key; with several resources, give it inside each")
    if isinstance(target, Mapping):
        raise InvalidRequest("resources", "expected a key, a Resource, or a list of them (a single dict: put it in a list)")
    out: List[Dict[str, Any]] = []
    for i, item in enumerate(target):
        if isinstance(item, str):
            out.append({"key": item, "mode": "exclusive"})
        elif isinstance(item, Resource):
            out.append(item.to_json())
        elif isinstance(item, Mapping):
            out.append(dict(item))
        else:
            raise InvalidRequest(f"resources[{i}]", f"expected a key, a Resource or a dict, got {type(item).__name__}")
    if not out:
        raise InvalidRequest("resources", "expected at least one resource")
    return out


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as the server describes it (``GET /v1/leases/{id}``)."""

    id: str
    owner: str
    resources: Tuple[Resource, ...]
    fence: int
    acquired_at: datetime
    expires_at: datetime
    ttl_ms: int
    request_id: Optional[str]
    metadata: Dict[str, Any] = field(default_factory=dict)
    lock_delay_ms: int = 0

    @property
    def keys(self) -> List[str]:
        return [r.key for r in self.resources]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LeaseInfo":
        acquired = parse_time(data["acquiredAt"])
        expires = parse_time(data["expiresAt"])
        assert acquired is not None and expires is not None
        return cls(
            id=str(data["id"]), owner=str(data["owner"]),
            resources=tuple(Resource(str(r["key"]), str(r.get("mode", "exclusive")), r.get("limit")) for r in data["resources"]),
            fence=int(data["fence"]), acquired_at=acquired, expires_at=expires, ttl_ms=int(data["ttlMs"]),
            request_id=data.get("requestId"), metadata=dict(data.get("metadata") or {}), lock_delay_ms=int(data.get("lockDelayMs") or 0),
        )
