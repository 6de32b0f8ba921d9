"""A held lease that renews itself in a background thread and fences itself.

It renews at a third of its TTL. When renewals keep failing (the server can't be reached) it
considers itself lost at its local deadline: the store's expiry placed on this process's
monotonic clock, minus a safety margin, so *before* the store would let anyone else in (SPEC
guarantee 11). Then ``lease.lost`` (a ``threading.Event``) is set and the ``on_lost`` callbacks
run. The renewal thread never raises; it is a daemon and ends when the lease is released or lost.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type

from ._values import Duration, LeaseInfo, Resource, duration_ms, safety_margin_s
from .errors import HoldfastError, LeaseLost, error_of, parse_time

if TYPE_CHECKING:
    from ._transport import Answer
    from .client import Client

LOG = logging.getLogger("holdfast")

LostCallback = Callable[["Lease", LeaseLost], object]


def _remaining_s(answer: "Answer", info: LeaseInfo) -> float:
    """Seconds from the moment the grant existed on the server to its expiry (by the server's clock)."""
    now = parse_time(answer.body.get("now")) if isinstance(answer.body, dict) else None
    return (info.expires_at - now).total_seconds() if now is not None else info.ttl_ms / 1000.0


class Lease:
    """A lease held by this process. Use it as a context manager to release it at the end of the block."""

    def __init__(self, client: "Client", answer: "Answer", auto_renew: bool, margin_ms: Optional[int],
                 on_lost: Optional[LostCallback] = None) -> None:
        self._client = client
        self._info = LeaseInfo.from_json(answer.body["lease"])
        self._auto_renew = auto_renew
        self._margin_ms = margin_ms
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._state = "held"
        self._release_failed = False
        self._callbacks: List[LostCallback] = [on_lost] if on_lost is not None else []
        #: Set when the lease is lost (expired, forced, or not renewable before its deadline).
        self.lost = threading.Event()
        #: Why it was lost, once ``lost`` is set.
        self.lost_reason: Optional[LeaseLost] = None
        self._deadline = self._deadline_of(answer, self._info)
        self._thread = threading.Thread(target=self._run, name=f"holdfast-lease-{self._info.id[:6]}", daemon=True)
        self._thread.start()

    # --- what the lease is ---
    @property
    def info(self) -> LeaseInfo:
        return self._info

    @property
    def id(self) -> str:
        """The lease id: a capability; whoever has it may renew or release the lease."""
        return self._info.id

    @property
    def owner(self) -> str:
        return self._info.owner

    @property
    def fence(self) -> int:
        """Strictly greater than every fence the store issued before: pass it to fenced resources."""
        return self._info.fence

    @property
    def resources(self) -> Tuple[Resource, ...]:
        return self._info.resources

    @property
    def keys(self) -> List[str]:
        return self._info.keys

    @property
    def acquired_at(self) -> datetime:
        return self._info.acquired_at

    @property
    def expires_at(self) -> datetime:
        return self._info.expires_at

    @property
    def ttl_ms(self) -> int:
        return self._info.ttl_ms

    @property
    def metadata(self) -> Dict[str, Any]:
        return self._info.metadata

    @property
    def state(self) -> str:
        """``held``, ``released``, ``lost``, or ``detached`` (its client was closed without releasing it)."""
        return self._state

    @property
    def held(self) -> bool:
        return self._state == "held"

    @property
    def remaining(self) -> float:
        """Seconds until this process considers the lease lost unless it renews."""
        return max(0.0, self._deadline - time.monotonic()) if self._state == "held" else 0.0

    def ensure_held(self) -> None:
        """Raises :class:`LeaseLost` unless the lease is still held (call it before a write that needs the lock)."""
        if self._state == "lost":
            assert self.lost_reason is not None
            raise self.lost_reason
        if self._state != "held" or self.remaining <= 0:
            raise LeaseLost(f"The lease is no longer held: it was {self._state}", lease_id=self.id)

    def on_lost(self, callback: LostCallback) -> None:
        """Calls ``callback(lease, error)`` (from the renewal thread) when the lease is lost; at once if it already is."""
        with self._lock:
            if self._state != "lost":
                self._callbacks.append(callback)
                return
        self._call(callback)

    # --- renewing and self-fencing ---
    def _deadline_of(self, answer: "Answer", info: LeaseInfo) -> float:
        # Anchored at the moment the grant existed on the server (the send time plus the server's own
        # time on it), never later than the answer's arrival: safe by at most one network trip.
        granted_at = answer.sent_at + min(answer.server_timing_s(), answer.arrived_at - answer.sent_at)
        return granted_at + _remaining_s(answer, info) - safety_margin_s(info.ttl_ms, self._margin_ms)

    def _run(self) -> None:
        failed = False
        while True:
            with self._lock:
                if self._state != "held":
                    return
                left = self._deadline - time.monotonic()
            if left <= 0:
                self._lose("it could not be renewed before its deadline")
                return
            ttl_s = self._info.ttl_ms / 1000.0
            if not self._auto_renew:
                delay = left
            elif failed:
                delay = max(0.01, min(left, 1.0, ttl_s / 10))
            else:
                delay = min(left, max(0.01, min(ttl_s / 3, left / 2)))
            if self._wake.wait(delay):
                self._wake.clear()
                continue
            if self._state != "held":
                return
            if time.monotonic() >= self._deadline:
                self._lose("it could not be renewed before its deadline")
                return
            if not self._auto_renew:
                continue
            try:
                self.renew()
                failed = False
            except LeaseLost:
                return
            except Exception as error:  # noqa: BLE001 - a background thread never raises; it retries until the deadline
                LOG.debug("renewal of lease %s… failed, retrying: %s", self.id[:6], error)
                failed = True

    def _call(self, callback: LostCallback) -> None:
        assert self.lost_reason is not None
        try:
            callback(self, self.lost_reason)
        except Exception:  # noqa: BLE001 - a callback's failure is its own
            LOG.exception("an on_lost callback of lease %s… failed", self.id[:6])

    def _lose(self, reason: str) -> LeaseLost:
        with self._lock:
            if self._state != "held":
                return self.lost_reason or LeaseLost(f"The lease is no longer held: it was {self._state}", lease_id=self.id)
            self._state = "lost"
            self.lost_reason = LeaseLost(f"The lease is no longer held: {reason}", lease_id=self.id)
            callbacks, self._callbacks = self._callbacks, []
        self._wake.set()
        self.lost.set()
        for callback in callbacks:
            self._call(callback)
        return self.lost_reason

    def _detach(self) -> None:
        """Its client closes without releasing it: no more renewals; ``lost`` is set, as the holder can't
        count on it any more, but the lease lives on in the store until its TTL (``on_lost`` is not called)."""
        with self._lock:
            if self._state != "held":
                return
            self._state = "detached"
            self.lost_reason = LeaseLost("The lease is no longer held here: its client was closed without releasing it", lease_id=self.id)
        self._wake.set()
        self.lost.set()

    def renew(self, ttl_ms: Optional[Duration] = None) -> None:
        """Extends the lease from now (store time). Raises :class:`LeaseLost` when it has ended."""
        if self._state != "held":
            raise self.lost_reason or LeaseLost(f"The lease is no longer held: it was {self._state}", lease_id=self.id)
        ttl = self._info.ttl_ms if ttl_ms is None else duration_ms(ttl_ms, "ttl_ms", 100)
        answer = self._client._transport.call("POST", f"v1/leases/{self.id}/renew", {"ttlMs": ttl})
        if answer.status == 200:
            info = LeaseInfo.from_json(answer.body["lease"])
            with self._lock:
                if self._state != "held":
                    raise LeaseLost(f"The lease is no longer held: it was {self._state}", lease_id=self.id)
                self._info = info
                self._deadline = self._deadline_of(answer, info)
            self._wake.set()
            return
        if answer.status in (404, 410):
            raise self._lose("the server ended it (expired, released or forced)" if answer.status == 410 else "the server does not know it")
        raise error_of(answer.status, answer.body)

    # --- releasing ---
    def release(self) -> bool:
        """Releases the lease: True if it was held, False when it had already ended.

        If the server can't be reached it raises, and a later ``release()`` tries again (otherwise
        the lease ends by its TTL); the lease counts as released here at once.
        """
        with self._lock:
            if self._state == "released" and not self._release_failed:
                return False
            if self._state == "held":
                self._state = "released"
        self._wake.set()
        try:
            released = self._client.release(self.id)
        except HoldfastError:
            self._release_failed = True
            raise
        self._release_failed = False
        return released

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if self._state != "held" and not self._release_failed:
            return
        try:
            self.release()
        except HoldfastError:
            if exc is None:
                raise
            # The block's own error says more; this lease ends by its TTL.
            LOG.warning("release of lease %s… failed after an error in its block; it ends by its TTL", self.id[:6], exc_info=True)

    def __repr__(self) -> str:
        return f"<Lease {self.id[:6]}… {','.join(self.keys)} owner={self.owner!r} fence={self.fence} {self._state}>"
