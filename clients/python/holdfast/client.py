"""``Client(url, token=None)``: the HTTP API of a holdfast server from Python.

Waiting happens on the server: ``acquire(..., wait_ms=N)`` sends ``waitMs`` and the server holds
the request open until it grants or times out. It holds one request for at most its
``maxWaitMs`` (15 min by default) and then answers WAIT_TIMEOUT with ``maxWaitMs``: the client then
sends the same request, with the same ``id``, again for the rest of its wait, and the server (which
kept it queued) goes on in the same queue place. When the wait ends without a grant, or the caller
is interrupted (``KeyboardInterrupt``, a network failure), the client cancels the wait by its id
(``DELETE /v1/tickets/{id}``), which also releases a lease granted at that moment: when
``acquire`` raises, nothing of the request is left on the server.
"""
from __future__ import annotations

import base64
import contextlib
import math
import os
import re
import ssl
import time
import weakref
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

from ._transport import Answer, Transport, segment
from ._values import DEFAULTS, LEASE_ID, Duration, KeyOrResources, LeaseInfo, duration_ms, resources_of
from .errors import InvalidRequest, LeaseLost, LockBusy, NotFound, WaitTimeout, error_of
from .lease import Lease, LostCallback

#: Below this much of a cut wait left, another request is not worth it.
_REWAIT_SLACK_S = 0.02
#: Where ``holdfast serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:7070"
#: Time allowed for the answer to a cancel sent after a failure.
_CANCEL_TIMEOUT_S = 5.0


def new_request_id() -> str:
    """A fresh random id (128 bits, base64url): names a wait so it can be resumed or cancelled."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")


class Client:
    """Talks to one holdfast server. Thread-safe; use it as a context manager to close its connections.

    :param url: ``http://HOST:PORT`` (or ``https://``) of ``holdfast serve``.
    :param token: bearer token of the server's tokens file (``None``: a server without tokens).
    :param owner: the owner of acquires that name none.
    :param ttl_ms: lease length of acquires that name none.
    :param timeout: seconds allowed for an answer, beyond the time the server may hold a wait.
    :param safety_margin_ms: how long before the store's expiry a lease that cannot renew counts as
        lost; ``None`` is a tenth of the TTL, 50 ms..2 s.
    :param ssl_context: for ``https://`` (default: ``ssl.create_default_context()``, which verifies the server).
    """

    def __init__(self, url: str, token: Optional[str] = None, *, owner: Optional[str] = None,
                 ttl_ms: Duration = DEFAULTS["ttl_ms"], timeout: float = DEFAULTS["timeout"],
                 safety_margin_ms: Optional[Duration] = DEFAULTS["safety_margin_ms"],
                 ssl_context: Optional[ssl.SSLContext] = None) -> None:
        if token is not None and (not isinstance(token, str) or token == ""):
            raise InvalidRequest("token", "expected a non-empty string or None")
        if owner is not None and (not isinstance(owner, str) or owner == ""):
            raise InvalidRequest("owner", "expected a non-empty string or None")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidRequest("timeout", f"expected a positive number of seconds, got {timeout!r}")
        self.owner = owner
        self.ttl_ms = duration_ms(ttl_ms, "ttl_ms", 100)
        self.safety_margin_ms = None if safety_margin_ms is None else duration_ms(safety_margin_ms, "safety_margin_ms")
        self._transport = Transport(url, token, float(timeout), ssl_context)
        self.url = self._transport.origin
        self._leases: "weakref.WeakSet[Lease]" = weakref.WeakSet()

    @classmethod
    def from_env(cls, **options: Any) -> "Client":
        """A client of the server the CLI talks to: ``$HOLDFAST_SERVER`` (default ``http://127.0.0.1:7070``,
        where ``holdfast serve`` listens by default) with the token ``$HOLDFAST_TOKEN``."""
        url = os.environ.get("HOLDFAST_SERVER") or DEFAULT_URL
        return cls(url, os.environ.get("HOLDFAST_TOKEN") or None, **options)

    # --- acquiring ---
    def acquire(self, key_or_resources: KeyOrResources, *, owner: Optional[str] = None, ttl_ms: Optional[Duration] = None,
                wait_ms: Duration = DEFAULTS["wait_ms"], metadata: Optional[Mapping[str, Any]] = None,
                request_id: Optional[str] = None, lock_delay_ms: Optional[Duration] = None, mode: Optional[str] = None,
                limit: Optional[int] = None, auto_renew: bool = DEFAULTS["auto_renew"],
                on_lost: Optional[LostCallback] = None) -> Lease:
        """Acquires a key (or several resources, all or nothing) and returns the held :class:`Lease`.

        ``wait_ms=0`` tries once and raises :class:`LockBusy` (with ``holders`` and ``retry_after``)
        when the lock is held; otherwise it waits in the queue, first come first served, and raises
        :class:`WaitTimeout` after ``wait_ms``. ``request_id`` makes a retry return the same lease.
        ``metadata["message"]`` is the sentence callers blocked by this lease read.
        """
        who = owner if owner is not None else self.owner
        if who is None:
            raise InvalidRequest("owner", "is required (give `owner=` here or to Client)")
        if not isinstance(auto_renew, bool):
            raise InvalidRequest("auto_renew", f"expected a bool, got {auto_renew!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidRequest("metadata", f"expected a dict, got {type(metadata).__name__}")
        wait = duration_ms(wait_ms, "wait_ms")
        body: Dict[str, Any] = {
            "id": new_request_id(), "owner": who, "resources": resources_of(key_or_resources, mode, limit),
            "ttlMs": self.ttl_ms if ttl_ms is None else duration_ms(ttl_ms, "ttl_ms", 100),
        }
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if request_id is not None:
            body["requestId"] = request_id
        if lock_delay_ms is not None:
            body["lockDelayMs"] = duration_ms(lock_delay_ms, "lock_delay_ms")
        answer = self._acquire(body, wait)
        lease = Lease(self, answer, auto_renew, self.safety_margin_ms, on_lost)
        self._leases.add(lease)
        return lease

    def _acquire(self, body: Dict[str, Any], wait: int) -> Answer:
        called = time.monotonic()
        deadline = called + wait / 1000.0
        while True:
            left = 0 if wait == 0 else max(0, math.ceil((deadline - time.monotonic()) * 1000))
            try:
                answer = self._transport.call("POST", "v1/leases", {**body, "waitMs": left}, hold_s=left / 1000.0)
            except BaseException:
                # Interrupted or cut off while the server may still hold us queued, or have granted a
                # lease whose answer never arrived: end it there.
                self._cancel_wait(body["id"])
                raise
            if answer.status == 201:
                return answer
            error = error_of(answer.status, answer.body)
            if isinstance(error, WaitTimeout):
                cut = "maxWaitMs" in error.data
                if cut and deadline - time.monotonic() > _REWAIT_SLACK_S:
                    continue
                if cut:
                    # The server keeps a cut request queued for its client: not coming back, we end it now.
                    self._cancel_wait(body["id"])
                waited = round((time.monotonic() - called) * 1000)
                raise WaitTimeout(re.sub(r"^Waited \d+ ms", f"Waited {waited} ms", error.message), {**error.data, "waitedMs": waited})
            raise error

    def _cancel_wait(self, request_id: str) -> None:
        """Ends a wait (and releases what it was granted) by its id; best effort, briefly: a server that
        can't be reached ends it by itself (its waiter TTL, the lease's TTL)."""
        with contextlib.suppress(Exception):
            self._transport.call("DELETE", f"v1/tickets/{request_id}", timeout_s=min(self._transport.timeout_s, _CANCEL_TIMEOUT_S))

    def try_acquire(self, key_or_resources: KeyOrResources, **options: Any) -> Optional[Lease]:
        """Like :meth:`acquire` with ``wait_ms=0``, but returns ``None`` when the lock is busy."""
        if "wait_ms" in options:
            raise InvalidRequest("wait_ms", "try_acquire tries once; use acquire(wait_ms=...) to wait")
        try:
            return self.acquire(key_or_resources, **options)
        except LockBusy:
            return None

    @contextlib.contextmanager
    def lock(self, key_or_resources: KeyOrResources, **options: Any) -> Iterator[Lease]:
        """``with client.lock("configdocs/update", owner="me") as lease:`` acquires (same options as
        :meth:`acquire`), renews while the block runs, and releases at its end."""
        with self.acquire(key_or_resources, **options) as lease:
            yield lease

    # --- leases by id (from any process that has the id) ---
    def get(self, lease_id: str) -> Optional[LeaseInfo]:
        """The live lease of this id, or ``None``."""
        if not LEASE_ID.match(lease_id):
            return None
        answer = self._transport.call("GET", f"v1/leases/{lease_id}")
        if answer.status == 200:
            return LeaseInfo.from_json(answer.body["lease"])
        if answer.status == 404:
            return None
        raise error_of(answer.status, answer.body)

    def renew(self, lease: Union[Lease, str], ttl_ms: Optional[Duration] = None) -> LeaseInfo:
        """Extends a lease from now; :class:`LeaseLost` when it has ended, :class:`NotFound` for an unknown id."""
        if isinstance(lease, Lease):
            lease.renew(ttl_ms)
            return lease.info
        if not LEASE_ID.match(lease):
            raise NotFound("The lease was not found")
        body = {} if ttl_ms is None else {"ttlMs": duration_ms(ttl_ms, "ttl_ms", 100)}
        answer = self._transport.call("POST", f"v1/leases/{lease}/renew", body)
        if answer.status == 200:
            return LeaseInfo.from_json(answer.body["lease"])
        error = error_of(answer.status, answer.body)
        if isinstance(error, LeaseLost):
            error.lease_id = lease
        raise error

    def release(self, lease: Union[Lease, str]) -> bool:
        """Releases a lease: True if it was held, False when it had ended (or never existed)."""
        if isinstance(lease, Lease):
            return lease.release()
        if not LEASE_ID.match(lease):
            return False
        answer = self._transport.call("DELETE", f"v1/leases/{lease}")
        if answer.status == 200:
            return bool(answer.body["released"])
        raise error_of(answer.status, answer.body)

    # --- owners, keys, the table ---
    def release_owner(self, owner: str, key: Optional[str] = None, by: Optional[str] = None) -> int:
        """Releases every lease of ``owner`` (only those holding ``key`` with ``key``); how many."""
        answer = self._transport.call("DELETE", f"v1/owners/{segment(owner)}/leases", query={"key": key, "by": by})
        if answer.status == 200:
            return int(answer.body["released"])
        raise error_of(answer.status, answer.body)

    def force_release(self, key: str, by: Optional[str] = None) -> int:
        """Admin: ends every lease on ``key``; how many."""
        answer = self._transport.call("DELETE", f"v1/locks/{segment(key)}", query={"by": by})
        if answer.status == 200:
            return int(answer.body["released"])
        raise error_of(answer.status, answer.body)

    def list(self, prefix: Optional[str] = None) -> Dict[str, Any]:
        """Held locks and queued waiters: ``{"locks": [...], "waiters": [...], "now": ISO}`` as the server gives them."""
        answer = self._transport.call("GET", "v1/locks", query={"prefix": prefix or None})
        if answer.status == 200:
            return dict(answer.body)
        raise error_of(answer.status, answer.body)

    def history(self, key: Optional[str] = None, owner: Optional[str] = None, limit: Optional[int] = None,
                before_id: Optional[int] = None) -> List[Dict[str, Any]]:
        """Past lease events, newest first: ``acquired``, ``released``, ``expired``, ``forced``."""
        answer = self._transport.call("GET", "v1/history", query={"key": key, "owner": owner, "limit": limit, "beforeId": before_id})
        if answer.status == 200:
            return list(answer.body["events"])
        raise error_of(answer.status, answer.body)

    def info(self) -> Dict[str, Any]:
        """The server's ``GET /v1/info``: its version, its store, its ``maxWaitMs``."""
        answer = self._transport.call("GET", "v1/info")
        if answer.status == 200:
            return dict(answer.body)
        raise error_of(answer.status, answer.body)

    # --- closing ---
    def close(self) -> None:
        """Closes the pooled connections. Leases still held stop renewing (their ``lost`` is set,
        state ``detached``) and live on in the store until their TTL."""
        for lease in list(self._leases):
            lease._detach()
        self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
