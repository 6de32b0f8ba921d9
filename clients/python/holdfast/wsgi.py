"""Shipyard's ``api_lock`` decorator (seed 002) over holdfast, for WSGI apps and Falcon-style responders.

While one instance of an API runs a handler holding ``configdocs/update``, every other request
for it (on any instance sharing the server) is answered 409 with Shipyard's sentence "Blocked by
another process: ... Lock expires in not more than N seconds", the holders in the SPEC error
body, and ``Retry-After``. The lock is released when the handler is done; a failed release is
logged and never fails the request (the lease then ends by its TTL, as Shipyard's log line says).

- :func:`api_lock` wraps a WSGI callable ``app(environ, start_response)`` (or a method
  ``app(self, environ, start_response)``). A body returned as a list is complete: the lock is
  released before it is returned, so the next request succeeds at once. A lazy body (a generator)
  keeps the lock until the server closes it.
- :func:`responder_lock` wraps a Falcon-style responder ``on_post(self, req, resp, ...)``: on
  refusal it sets ``resp.status``, the ``Retry-After`` header and a JSON body, and returns.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import socket
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, TypeVar, Union

from ._values import Duration, KeyOrResources, duration_ms
from .client import Client
from .errors import Blocked, HoldfastError
from .lease import Lease

LOG = logging.getLogger("holdfast.wsgi")



def default_owner() -> str:
    """This API instance: ``api@HOST:PID`` (read per request, so forked workers differ)."""
    return f"api@{socket.gethostname()}:{os.getpid()}"

F = TypeVar("F", bound=Callable[..., Any])
#: A value fixed, or computed from the request (the WSGI environ, or the Falcon-style ``req``).
PerRequest = Union[Any, Callable[[Any], Any]]
#: A client, a function returning one (made late, at the first request), or None: :func:`default_client`.
ClientSource = Union[Client, Callable[[], Client], None]

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            410: "Gone", 503: "Service Unavailable"}


_default_client: Optional[Client] = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client of decorators given none: :meth:`Client.from_env` (``$HOLDFAST_SERVER``, ``$HOLDFAST_TOKEN``), made once."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            _default_client = Client.from_env()
        return _default_client


def blocked_sentence(name: str, retry_after_ms: int) -> str:
    """Shipyard's sentence: "Blocked by another process: ... Lock expires in not more than N seconds"."""
    seconds = max(1, math.ceil(retry_after_ms / 1000))
    return (f"Blocked by another process: Another process is currently blocking this request with a lock for {name}. "
            f"Lock expires in not more than {seconds} seconds")


class Refusal:
    """The answer for a request that could not take its lock."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: Dict[str, Any]) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def status_line(self) -> str:
        return f"{self.status} {_REASONS.get(self.status, 'Error')}"

    def payload(self) -> bytes:
        return json.dumps(self.body).encode("utf-8")


def refusal_of(error: HoldfastError, name: str) -> Refusal:
    if isinstance(error, Blocked):
        seconds = max(1, math.ceil(error.retry_after_ms / 1000))
        body = {"error": {**error.data, "code": error.code, "message": blocked_sentence(name, error.retry_after_ms), "detail": error.message}}
        return Refusal(409, [("Retry-After", str(seconds))], body)
    return Refusal(error.status, [], {"error": {**error.data, "code": error.code, "message": error.message}})


def _keys_of(target: KeyOrResources) -> str:
    if isinstance(target, str):
        return target
    out = []
    for r in [target] if not isinstance(target, Iterable) else target:
        out.append(r if isinstance(r, str) else r["key"] if isinstance(r, Mapping) else getattr(r, "key", str(r)))
    return ", ".join(out)


class _RouteLock:
    def __init__(self, key: PerRequest, client: ClientSource, ttl_ms: Duration, wait_ms: Duration,
                 owner: PerRequest, metadata: PerRequest, name: Optional[str],
                 on_release_error: Optional[Callable[[BaseException, Any], None]]) -> None:
        self.key = key
        self.client = client
        self.ttl_ms = duration_ms(ttl_ms, "ttl_ms", 100)
        self.wait_ms = duration_ms(wait_ms, "wait_ms")
        self.owner = owner
        self.metadata = metadata
        self.name = name
        self.on_release_error = on_release_error

    @staticmethod
    def _value(value: PerRequest, request: Any) -> Any:
        return value(request) if callable(value) else value

    def attempt(self, request: Any) -> Tuple[Optional[Lease], Optional[Refusal], str]:
        target = self._value(self.key, request)
        name = self.name or _keys_of(target)
        client = self.client if isinstance(self.client, Client) else default_client() if self.client is None else self.client()
        try:
            lease = client.acquire(target, owner=self._value(self.owner, request) or default_owner(), ttl_ms=self.ttl_ms,
                                   wait_ms=self.wait_ms, metadata=self._value(self.metadata, request))
        except HoldfastError as error:
            return None, refusal_of(error, name), name
        return lease, None, name

    def release(self, lease: Lease, name: str, request: Any) -> None:
        """Releases once; a failure is logged (or given to ``on_release_error``) and goes no further."""
        try:
            lease.release()
        except Exception as error:  # noqa: BLE001 - Shipyard: a non-fatal case with no expected action
            try:
                if self.on_release_error is not None:
                    self.on_release_error(error, request)
                else:
                    LOG.error("release of the lock on %s failed; it will expire in not more than %d seconds: %s",
                              name, math.ceil(lease.ttl_ms / 1000), error)
            except Exception:  # noqa: BLE001 - a failing hook must not fail the request either
                LOG.exception("the on_release_error hook failed")


class _ReleasingBody:
    """A lazy WSGI body that keeps the lock until the server closes it."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._release()


def api_lock(key: PerRequest, ttl_ms: Duration = 60_000, *, client: ClientSource = None,
             owner: PerRequest = None, wait_ms: Duration = 0, metadata: PerRequest = None, name: Optional[str] = None,
             on_release_error: Optional[Callable[[BaseException, Any], None]] = None) -> Callable[[F], F]:
    """Locks a WSGI callable on ``key`` (a key, resources, or a function of the environ) while it runs.

    ``owner`` defaults to this API instance (``api@HOST:PID``); ``wait_ms=0`` refuses at once, like
    Shipyard. ``client`` may be a function returning the client (made late, at the first request);
    without one, the server of ``$HOLDFAST_SERVER`` (:func:`default_client`).
    """
    route = _RouteLock(key, client, ttl_ms, wait_ms, owner, metadata, name, on_release_error)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Iterable[bytes]:
            environ, start_response = args[-2], args[-1]
            lease, refusal, lock_name = route.attempt(environ)
            if lease is None:
                assert refusal is not None
                payload = refusal.payload()
                start_response(refusal.status_line, [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *refusal.headers])
                return [payload]
            released = False

            def release() -> None:
                nonlocal released
                if not released:
                    released = True
                    route.release(lease, lock_name, environ)

            try:
                body = func(*args, **kwargs)
            except BaseException:
                release()
                raise
            if isinstance(body, (list, tuple)):
                release()
                return body
            return _ReleasingBody(body, release)

        return wrapper  # type: ignore[return-value]

    return decorate


def responder_lock(key: PerRequest, ttl_ms: Duration = 60_000, *, client: ClientSource = None,
                   owner: PerRequest = None, wait_ms: Duration = 0, metadata: PerRequest = None, name: Optional[str] = None,
                   on_release_error: Optional[Callable[[BaseException, Any], None]] = None) -> Callable[[F], F]:
    """Locks a Falcon-style responder ``(self, req, resp, *args, **kwargs)`` on ``key`` while it runs.

    ``key``, ``owner`` and ``metadata`` may be functions of ``req``. When the lock is busy the
    responder is not called: ``resp.status`` is 409, ``Retry-After`` is set, and the body is the
    SPEC error with Shipyard's sentence as its ``message``.
    """
    route = _RouteLock(key, client, ttl_ms, wait_ms, owner, metadata, name, on_release_error)

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(resource: Any, req: Any, resp: Any, *args: Any, **kwargs: Any) -> Any:
            lease, refusal, lock_name = route.attempt(req)
            if lease is None:
                assert refusal is not None
                resp.status = refusal.status_line
                for header, value in refusal.headers:
                    resp.set_header(header, value)
                resp.content_type = "application/json"
                text = refusal.payload().decode("utf-8")
                try:
                    resp.text = text
                except AttributeError:  # Falcon 2 calls it `body`
                    resp.body = text
                return None
            try:
                return func(resource, req, resp, *args, **kwargs)
            finally:
                route.release(lease, lock_name, req)

        return wrapper  # type: ignore[return-value]

    return decorate
