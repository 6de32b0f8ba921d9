"""The client against a real server: acquire, busy, waits, renewals, loss, ids, owners, the table, bad input, auth."""
from __future__ import annotations

import signal
import threading
import time
import unittest
from datetime import datetime, timezone
from typing import List

from holdfast import (
    Client, Forbidden, InvalidRequest, Lease, LeaseLost, LockBusy, NotFound, Resource, StoreUnavailable, Unauthorized,
    WaitTimeout, shared,
)

from .support import Server, unique

SERVER = Server()

setUpModule = SERVER.start_for_module


class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.client = Client(SERVER.url)
        self.other = Client(SERVER.url)
        self.addCleanup(self.client.close)
        self.addCleanup(self.other.close)
        self.prefix = unique("py")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def test_acquire_busy_release(self) -> None:
        key = self.key("apps/42/task")
        lease = self.client.acquire(key, owner="backup-7", ttl_ms=20_000, metadata={"message": "Backup of app 42 in progress"})
        self.addCleanup(lease.release)
        self.assertGreater(lease.fence, 0)
        self.assertEqual(lease.keys, [key])
        self.assertEqual(lease.resources, (Resource(key, "exclusive", None),))
        self.assertEqual(lease.ttl_ms, 20_000)
        self.assertTrue(lease.held)
        self.assertGreater(lease.expires_at, lease.acquired_at)

        self.assertIsNone(self.other.try_acquire(key, owner="app-task-42"))
        with self.assertRaises(LockBusy) as caught:
            self.other.acquire(key, owner="app-task-42")
        busy = caught.exception
        self.assertEqual(busy.code, "LOCK_BUSY")
        self.assertEqual(busy.status, 409)
        self.assertEqual(len(busy.holders), 1)
        holder = busy.holders[0]
        self.assertEqual((holder.key, holder.owner, holder.mode, holder.state), (key, "backup-7", "exclusive", "held"))
        self.assertEqual(holder.metadata, {"message": "Backup of app 42 in progress"})
        self.assertEqual(holder.expires_at, lease.expires_at)
        self.assertIn('is held by owner "backup-7" (exclusive)', busy.message)
        self.assertIn("Backup of app 42 in progress", busy.message)
        self.assertTrue(0 < busy.retry_after <= 20)

        self.assertTrue(lease.release())
        self.assertEqual(lease.state, "released")
        self.assertFalse(lease.release())
        self.assertIsNone(self.client.get(lease.id))
        again = self.other.try_acquire(key, owner="app-task-42")
        assert again is not None
        self.assertGreater(again.fence, lease.fence)
        again.release()

    def test_not_reentrant_and_request_id(self) -> None:
        key = self.key("configdocs")
        first = self.client.acquire(key, owner="me", request_id="step-1")
        self.addCleanup(first.release)
        with self.assertRaises(LockBusy):
            self.client.acquire(key, owner="me")
        # The same request sent again (a retry after a lost answer) gets the same lease back.
        retry = self.client.acquire(key, owner="me", request_id="step-1")
        self.assertEqual((retry.id, retry.fence), (first.id, first.fence))

    def test_shared_limit_and_all_or_nothing(self) -> None:
        pool = self.key("pools/P")
        one = self.client.acquire(pool, owner="a", mode="shared", limit=2)
        two = self.client.acquire([shared(pool, 2)], owner="b")
        self.addCleanup(one.release)
        self.addCleanup(two.release)
        self.assertIsNone(self.client.try_acquire(pool, owner="c", mode="shared", limit=2))
        # All or nothing: `free` is not taken when `pool` is busy for an exclusive request.
        free = self.key("domains/D")
        with self.assertRaises(LockBusy) as caught:
            self.client.acquire([free, {"key": pool, "mode": "exclusive"}], owner="reconstruct")
        self.assertEqual({h.owner for h in caught.exception.holders}, {"a", "b"})
        lease = self.client.acquire(free, owner="d")
        lease.release()

    def test_waiter_is_granted_when_the_holder_releases(self) -> None:
        key = self.key("lb/SITEB-CLS-CLOUD-01")
        holder = self.client.acquire(key, owner="inventory")
        got: List[Lease] = []
        waiter = threading.Thread(target=lambda: got.append(self.other.acquire(key, owner="second", wait_ms="30s")))
        waiter.start()
        self._wait_for_waiter(key)
        released_at = time.monotonic()
        self.assertTrue(holder.release())
        waiter.join(30)
        self.assertEqual(len(got), 1)
        self.assertGreater(got[0].fence, holder.fence)
        self.assertGreater(got[0].acquired_at, holder.acquired_at)
        self.assertLess(released_at, time.monotonic())
        got[0].release()

    def _wait_for_waiter(self, key: str) -> None:
        for _ in range(400):
            if any(w["key"] == key for w in self.client.list(prefix=key)["waiters"]):
                return
            time.sleep(0.01)
        self.fail(f"no waiter on {key}")

    def test_wait_timeout_leaves_nothing_queued(self) -> None:
        key = self.key("busy")
        holder = self.client.acquire(key, owner="holder")
        self.addCleanup(holder.release)
        with self.assertRaises(WaitTimeout) as caught:
            self.other.acquire(key, owner="impatient", wait_ms=300)
        timeout = caught.exception
        self.assertEqual(timeout.code, "WAIT_TIMEOUT")
        self.assertGreaterEqual(timeout.waited_ms, 300)
        self.assertEqual([h.owner for h in timeout.holders], ["holder"])
        self.assertEqual(self.client.list(prefix=key)["waiters"], [])

    def test_interrupted_wait_leaves_nothing_on_the_server(self) -> None:
        key = self.key("interrupted")
        holder = self.client.acquire(key, owner="holder")

        class Interrupted(Exception):
            pass

        def interrupt(_signum: int, _frame: object) -> None:
            raise Interrupted()

        previous = signal.signal(signal.SIGUSR1, interrupt)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        main = threading.get_ident()
        timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGUSR1))
        timer.start()
        # Like Ctrl-C during a long wait: the blocked read is interrupted, and the wait is cancelled by its id.
        with self.assertRaises(Interrupted):
            self.other.acquire(key, owner="interrupted", wait_ms="30s")
        timer.join()
        self.assertEqual(self.client.list(prefix=key)["waiters"], [])
        holder.release()
        table = self.client.list(prefix=key)
        self.assertEqual((table["locks"], table["waiters"]), ([], []))

    def test_renews_in_the_background(self) -> None:
        key = self.key("renewed")
        lease = self.client.acquire(key, owner="long-task", ttl_ms=1200)
        first_expiry = lease.expires_at
        time.sleep(3.0)  # over two TTLs
        self.assertTrue(lease.held)
        self.assertFalse(lease.lost.is_set())
        self.assertGreater(lease.expires_at, first_expiry)
        info = self.other.get(lease.id)
        assert info is not None
        self.assertEqual(info.fence, lease.fence)
        self.assertTrue(lease.release())

    def test_lost_event_when_forced(self) -> None:
        key = self.key("forced")
        calls: List[LeaseLost] = []
        lease = self.client.acquire(key, owner="victim", ttl_ms=600, on_lost=lambda _lease, error: calls.append(error))
        self.assertEqual(self.other.force_release(key, by="operator"), 1)
        self.assertTrue(lease.lost.wait(5), "the lease did not notice it was forced")
        self.assertEqual(lease.state, "lost")
        self.assertIsInstance(lease.lost_reason, LeaseLost)
        self.assertEqual(len(calls), 1)
        with self.assertRaises(LeaseLost):
            lease.ensure_held()
        with self.assertRaises(LeaseLost):
            lease.renew()
        self.assertFalse(lease.release())
        forced = [e for e in self.client.history(key=key) if e["type"] == "forced"]
        self.assertEqual(len(forced), 1)
        self.assertIn("operator", forced[0]["by"])

    def test_self_fences_before_the_store_expires_it(self) -> None:
        with Server() as server:
            client = Client(server.url)
            lost_at: List[datetime] = []
            lease = client.acquire("gone/soon", owner="cut-off", ttl_ms=2000,
                                   on_lost=lambda _l, _e: lost_at.append(datetime.now(timezone.utc)))
            lease.renew()
            server.stop()  # every renewal fails from now on
            self.assertTrue(lease.lost.wait(5))
            self.assertEqual(len(lost_at), 1)
            # Lost by this process's clock before the store's expiry (the margin is a tenth of the TTL).
            self.assertLess(lost_at[0], lease.expires_at)
            self.assertIn("could not be renewed", str(lease.lost_reason))
            with self.assertRaises(StoreUnavailable):
                lease.release()
            client.close()

    def test_leases_by_id_from_another_client(self) -> None:
        key = self.key("async-task")
        lease = self.client.acquire(key, owner="spm", ttl_ms=5000, auto_renew=False)
        renewed = self.other.renew(lease.id, ttl_ms=60_000)
        self.assertEqual((renewed.id, renewed.ttl_ms, renewed.fence), (lease.id, 60_000, lease.fence))
        self.assertGreater(renewed.expires_at, lease.expires_at)
        self.assertTrue(self.other.release(lease.id))
        with self.assertRaises(LeaseLost):
            self.other.renew(lease.id)
        self.assertFalse(self.other.release(lease.id))
        self.assertFalse(self.other.release("not a lease id"))
        with self.assertRaises(NotFound):
            self.other.renew("A" * 22)
        self.assertIsNone(self.other.get("A" * 22))
        lease.release()

    def test_release_owner_and_force_release(self) -> None:
        a, b = self.key("a"), self.key("b")
        self.client.acquire(a, owner="task-9")
        self.client.acquire(b, owner="task-9")
        self.assertEqual(self.other.release_owner("task-9", key=a), 1)
        self.assertEqual(self.other.release_owner("task-9"), 1)
        self.assertEqual(self.other.release_owner("task-9"), 0)
        types = [e["type"] for e in self.client.history(owner="task-9", limit=10)]
        self.assertEqual(types.count("acquired"), 2)
        self.assertEqual(self.other.force_release(a), 0)

    def test_list_shows_holders_and_waiters(self) -> None:
        key = self.key("table")
        holder = self.client.acquire(key, owner="holder")
        waiter = threading.Thread(target=lambda: self._quietly(lambda: self.other.acquire(key, owner="waiter", wait_ms=1500)))
        waiter.start()
        self._wait_for_waiter(key)
        table = self.client.list(prefix=self.prefix)
        self.assertEqual([(l["key"], l["owner"], l["fence"]) for l in table["locks"]], [(key, "holder", holder.fence)])
        self.assertEqual([(w["key"], w["owner"], w["position"]) for w in table["waiters"]], [(key, "waiter", 1)])
        holder.release()
        waiter.join(10)

    @staticmethod
    def _quietly(fn: object) -> None:
        lease = fn()  # type: ignore[operator]
        lease.release()

    def test_context_manager_releases(self) -> None:
        key = self.key("configdocs/update")
        with self.client.lock(key, owner="shipyard") as lease:
            self.assertIsNotNone(self.other.get(lease.id))
        self.assertEqual(lease.state, "released")
        self.assertIsNone(self.other.get(lease.id))
        with self.assertRaises(RuntimeError):
            with self.client.acquire(key, owner="shipyard") as second:
                raise RuntimeError("the block failed")
        self.assertIsNone(self.other.get(second.id))

    def test_closing_the_client_detaches_its_leases(self) -> None:
        key = self.key("detached")
        client = Client(SERVER.url)
        lease = client.acquire(key, owner="closer", ttl_ms=5000)
        client.close()
        self.assertEqual(lease.state, "detached")
        self.assertTrue(lease.lost.is_set())
        with self.assertRaises(LeaseLost):
            lease.ensure_held()
        # It lives on in the store until its TTL; another client may release it by id.
        self.assertIsNotNone(self.other.get(lease.id))
        self.assertTrue(self.other.release(lease.id))

    def test_bad_input_names_the_field_and_changes_nothing(self) -> None:
        key = self.key("bad")
        with self.assertRaises(InvalidRequest) as caught:
            self.client.acquire(key, owner="x", ttl_ms=5)
        self.assertEqual(caught.exception.field, "ttl_ms")
        self.assertIn("100..", caught.exception.reason)
        with self.assertRaises(InvalidRequest) as caught:
            self.client.acquire(key)
        self.assertEqual(caught.exception.field, "owner")
        with self.assertRaises(InvalidRequest) as caught:
            self.client.acquire(f"{key}//empty", owner="x")
        self.assertIn("key", caught.exception.field)
        self.assertEqual(caught.exception.status, 400)
        with self.assertRaises(InvalidRequest) as caught:
            self.client.acquire(key, owner="x", metadata={"blob": "x" * 20_000})
        self.assertEqual(caught.exception.field, "metadata")
        with self.assertRaises(InvalidRequest) as caught:
            self.client.acquire(key, owner="x", wait_ms="soon")
        self.assertEqual(caught.exception.field, "wait_ms")
        table = self.client.list(prefix=key)
        self.assertEqual((table["locks"], table["waiters"]), ([], []))

    def test_unreachable_server_is_store_unavailable(self) -> None:
        with Server() as server:
            url = server.url
        with Client(url, timeout=2) as client:
            with self.assertRaises(StoreUnavailable) as caught:
                client.acquire("x", owner="y")
        self.assertEqual(caught.exception.code, "STORE_UNAVAILABLE")
        self.assertIn(url, str(caught.exception))


class AuthTest(unittest.TestCase):
    CI = "ci-token-0123456789abcdef"
    ADMIN = "admin-token-0123456789abcdef"
    server: Server

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(tokens=[
            {"name": "ci", "token": cls.CI, "owners": "ci-*"},
            {"name": "ops", "token": cls.ADMIN, "admin": True},
        ]).start()
        cls.addClassCleanup(cls.server.cleanup)

    def test_tokens_and_owner_patterns(self) -> None:
        with Client(self.server.url) as anonymous, Client(self.server.url, token=self.CI) as ci, \
                Client(self.server.url, token=self.ADMIN) as admin:
            with self.assertRaises(Unauthorized):
                anonymous.acquire("builds/1", owner="ci-1")
            with self.assertRaises(Forbidden):
                ci.acquire("builds/1", owner="deploy")
            lease = ci.acquire("builds/1", owner="ci-1", ttl_ms=600)
            with self.assertRaises(Forbidden):
                ci.force_release("builds/1")
            self.assertEqual(admin.force_release("builds/1"), 1)
            self.assertTrue(lease.lost.wait(5), "the renewal did not see the forced release")


if __name__ == "__main__":
    unittest.main()
