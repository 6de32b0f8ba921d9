"""holdfast: locks and leases with fencing tokens, from Python (standard library only).

    from holdfast import Client
    client = Client("http://127.0.0.1:7070")
    with client.lock("configdocs/update", owner="shipyard-api", wait_ms="30s") as lease:
        write(data, fence=lease.fence)
"""
from ._values import DEFAULTS, Duration, LeaseInfo, Resource, shared
from .client import Client, new_request_id
from .errors import (
    Blocked, Forbidden, HoldfastError, Holder, InvalidRequest, LeaseLost, LockBusy, NotFound, StoreUnavailable, Unauthorized,
    WaitTimeout,
)
from .lease import Lease
from .wsgi import api_lock, blocked_sentence, responder_lock

__version__ = "0.1.0"

__all__ = [
    "Client", "Lease", "LeaseInfo", "Resource", "shared", "Duration", "DEFAULTS", "new_request_id",
    "HoldfastError", "Blocked", "LockBusy", "WaitTimeout", "LeaseLost", "NotFound", "InvalidRequest", "Unauthorized",
    "Forbidden", "StoreUnavailable", "Holder", "api_lock", "responder_lock", "blocked_sentence",
]
