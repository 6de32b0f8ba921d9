"""JSON over HTTP(S) to a holdfast server with ``http.client`` and a small pool of keep-alive
connections shared by threads (a lease renews from its own thread).

Every state-changing request (POST, DELETE) carries a JSON body (``{}`` when it has nothing to say)
with ``Content-Type: application/json``; no ``Origin`` header is ever sent. A connection idle for
longer than a few seconds is not reused (the server closes idle ones after its keep-alive time);
a request on a reused connection that the server had closed is sent once more. Network failures
become :class:`~holdfast.errors.StoreUnavailable`.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote, urlencode, urlsplit

from .errors import InvalidRequest, StoreUnavailable

IDLE_CONNECTION_S = 4.0
_POOL_SIZE = 8
_Connection = Union[http.client.HTTPConnection, http.client.HTTPSConnection]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]
    #: time.monotonic() when the request was sent and when its answer had arrived.
    sent_at: float
    arrived_at: float

    def server_timing_s(self) -> float:
        """The server's own time until the grant (``Server-Timing: grant;dur=MS``), in seconds."""
        header = self.headers.get("server-timing", "")
        for part in header.split(","):
            name, _, rest = part.strip().partition(";")
            if name == "grant" and rest.startswith("dur="):
                try:
                    return float(rest[4:]) / 1000.0
                except ValueError:
                    return 0.0
        return 0.0


def segment(value: str) -> str:
    """One URL path segment (``/`` escaped too)."""
    return quote(value, safe="")


class Transport:
    def __init__(self, url: str, token: Optional[str], timeout_s: float, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("url", f"expected http://HOST:PORT or https://HOST:PORT, got {url[:80]!r}")
        if parts.username or parts.password:
            raise InvalidRequest("url", "give the token as `token=`, not in the URL")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self._ssl = ssl_context
        self._idle: List[Tuple[_Connection, float]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self, timeout: float) -> _Connection:
        if self._secure:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl or ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self, timeout: float) -> Tuple[_Connection, bool]:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < IDLE_CONNECTION_S:
                    conn.timeout = timeout
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                    return conn, True
                conn.close()
        return self._connect(timeout), False

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _POOL_SIZE:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def url(self, path: str, query: Optional[Mapping[str, Any]] = None) -> str:
        q = {k: str(v) for k, v in (query or {}).items() if v is not None}
        return f"{self._base}/{path.lstrip('/')}" + (f"?{urlencode(q)}" if q else "")

    def call(self, method: str, path: str, body: Optional[Mapping[str, Any]] = None,
             query: Optional[Mapping[str, Any]] = None, hold_s: float = 0.0, timeout_s: Optional[float] = None) -> Answer:
        """Sends one request and reads its JSON answer. ``hold_s``: extra time the server may hold it (a
        wait); ``timeout_s``: the time allowed for an answer, instead of the client's."""
        if self._closed:
            raise InvalidRequest("client", "this client is closed")
        headers: Dict[str, str] = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        payload: Optional[bytes] = None
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            payload = json.dumps(dict(body or {}), separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        target = self.url(path, query)
        timeout = (self.timeout_s if timeout_s is None else timeout_s) + hold_s
        for attempt in (1, 2):
            conn, reused = self._take(timeout)
            sent_at = time.monotonic()
            try:
                conn.request(method, target, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                conn.close()
                # A pooled connection the server had closed: the request never reached it, send it again.
                if reused and attempt == 1:
                    continue
                raise StoreUnavailable(f"cannot reach the holdfast server at {self.origin}: {error}") from error
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                what = "no answer in time" if isinstance(error, socket.timeout) else str(error) or type(error).__name__
                raise StoreUnavailable(f"cannot reach the holdfast server at {self.origin}: {what}") from error
            except BaseException:
                # KeyboardInterrupt and the like: the connection is in an unknown state.
                conn.close()
                raise
            arrived_at = time.monotonic()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            if response.will_close:
                conn.close()
            else:
                self._give_back(conn)
            parsed: Any = None
            if raw:
                try:
                    parsed = json.loads(raw.decode("utf-8"))
                except ValueError as error:
                    raise StoreUnavailable(
                        f"the server at {self.origin} answered {response.status} with something that is not JSON"
                    ) from error
            return Answer(response.status, parsed, answer_headers, sent_at, arrived_at)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
