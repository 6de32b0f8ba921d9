"""Seed 004 (aws-lambda-fsm-workflows leases), SPEC section 7.5, in Python against a real server.

The seed names a lease by (correlation_id, steps, retries) and releases it with its fence token;
holdfast names the resource by a key, the holder by an owner, and the lease by an unguessable id:
only that id renews or releases it (the seed's "right fence token" made a capability).

The GC-pause story of the seed's docstring (Kleppmann, "How to do distributed locking"): holder 1
pauses past its lease, holder 2 gets the lease and writes, holder 1 wakes up and writes late. The
resource (a SQLite table here, a real database) compares fences and rejects the late write; holder
1's own lease had already fenced itself before the server let holder 2 in.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
import unittest
import uuid
from typing import Any, Dict, List, Optional

from holdfast import Client, Lease, LeaseLost, LockBusy, new_request_id

from .support import Server


class FencedTable:
    """A storage system that understands fence tokens: a write with a fence older than the newest one it saw is refused."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("CREATE TABLE fences (resource TEXT PRIMARY KEY, fence INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE machines (machine TEXT PRIMARY KEY, state TEXT NOT NULL, writer TEXT NOT NULL, fence INTEGER NOT NULL)")

    def write(self, machine: str, fence: int, writer: str, state: str) -> Dict[str, Any]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT fence FROM fences WHERE resource = ?", (f"machine/{machine}",)).fetchone()
                if row is not None and row[0] > fence:
                    self._db.execute("ROLLBACK")
                    return {"accepted": False, "highestFence": row[0]}
                self._db.execute("INSERT INTO fences VALUES (?, ?) ON CONFLICT (resource) DO UPDATE SET fence = excluded.fence",
                                 (f"machine/{machine}", fence))
                self._db.execute("INSERT INTO machines VALUES (?, ?, ?, ?) ON CONFLICT (machine) DO UPDATE SET "
                                 "state = excluded.state, writer = excluded.writer, fence = excluded.fence",
                                 (machine, state, writer, fence))
                self._db.execute("COMMIT")
                return {"accepted": True, "value": state, "fence": fence}
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def row(self, machine: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            row = self._db.execute("SELECT state, writer, fence FROM machines WHERE machine = ?", (machine,)).fetchone()
        return None if row is None else {"state": row[0], "writer": row[1], "fence": row[2]}

    def close(self) -> None:
        self._db.close()


class FsmSeed(unittest.TestCase):
    """The seed's tests on a server over ``STORE`` (None: a fresh SQLite file)."""

    STORE: Optional[str] = None

    def setUp(self) -> None:
        # A fresh store per test: the seed's literal fences 1, 2, 3.
        self.server = Server(self.STORE).start()
        self.addCleanup(self.server.cleanup)
        self.lambda1 = Client(self.server.url)
        self.lambda2 = Client(self.server.url)
        self.addCleanup(self.lambda1.close)
        self.addCleanup(self.lambda2.close)
        self.correlation_id = uuid.uuid4().hex
        self.key = f"fsm/machines/{self.correlation_id}"

    def owner(self, steps: int, retries: int) -> str:
        return f"{self.correlation_id}:step-{steps}:retry-{retries}"

    def test_smoke(self) -> None:
        key = self.key
        # can acquire lease
        lease1 = self.lambda1.acquire(key, owner=self.owner(1, 1))
        self.assertEqual(lease1.fence, 1)
        # cannot re-acquire own lease (not re-entrant)
        with self.assertRaises(LockBusy):
            self.lambda1.acquire(key, owner=self.owner(1, 1))
        # cannot acquire someone else's lease
        self.assertIsNone(self.lambda2.try_acquire(key, owner=self.owner(1, 2)))
        # cannot release someone else's lease: (1, 2) has no lease id, and its owner holds nothing here
        self.assertFalse(self.lambda2.release(new_request_id()))
        self.assertEqual(self.lambda2.release_owner(self.owner(1, 2), key=key), 0)
        # cannot release own lease with a different token: only the lease id releases
        self.assertFalse(self.lambda1.release(new_request_id()))
        self.assertIsNotNone(self.lambda1.get(lease1.id))
        # can release own lease
        self.assertTrue(self.lambda1.release(lease1.id))
        # someone else can acquire a new lease with a short timeout (never renewed)
        lease2 = self.lambda2.acquire(key, owner=self.owner(1, 2), ttl_ms=1000, auto_renew=False)
        self.assertEqual(lease2.fence, 2)
        time.sleep(2)
        # someone else can acquire a new lease when the previous one times out
        lease3 = self.lambda2.acquire(key, owner=self.owner(1, 2))
        self.assertEqual(lease3.fence, 3)
        # the timed-out lease fenced itself, can't renew, and can't release the new lease
        self.assertTrue(lease2.lost.is_set())
        with self.assertRaises(LeaseLost):
            self.lambda2.renew(lease2.id)
        self.assertFalse(lease2.release())
        self.assertIsNotNone(self.lambda2.get(lease3.id))
        self.assertTrue(lease3.release())

    def test_gc_pause_late_write_is_rejected(self) -> None:
        folder = tempfile.mkdtemp(prefix="holdfast-fsm-")
        self.addCleanup(shutil.rmtree, folder, True)
        table = FencedTable(os.path.join(folder, "resource.db"))
        self.addCleanup(table.close)
        key = f"{self.key}/dispatch"
        marks: Dict[str, float] = {}

        # time 0: lease acquired by process 1, which renews nothing: it is about to freeze
        holder1 = self.lambda1.acquire(key, owner="lambda-1", ttl_ms=800, auto_renew=False,
                                       on_lost=lambda _l, _e: marks.setdefault("holder1_lost", time.monotonic()))
        # process 2 is already waiting for the lease
        done: List[Lease] = []
        results: List[Dict[str, Any]] = []

        def process2() -> None:
            holder2 = self.lambda2.acquire(key, owner="lambda-2", wait_ms="30s")
            marks["holder2_granted"] = time.monotonic()
            # time 3 + 4: the lease expired, process 2 acquired it and writes
            results.append(table.write(self.correlation_id, holder2.fence, "lambda-2", "step-2-done"))
            done.append(holder2)

        thread = threading.Thread(target=process2)
        thread.start()
        # time 1..5: the garbage collection pause lasts until process 2 has written
        thread.join(30)
        self.assertEqual(len(done), 1)
        holder2 = done[0]
        time.sleep(0.01)
        # time 6: process 1 wakes up; a careful holder stops here, this one writes anyway
        self.assertTrue(holder1.lost.is_set())
        with self.assertRaises(LeaseLost):
            holder1.ensure_held()
        late = table.write(self.correlation_id, holder1.fence, "lambda-1", "step-1-late")

        self.assertGreater(holder2.fence, holder1.fence)
        self.assertEqual(results, [{"accepted": True, "value": "step-2-done", "fence": holder2.fence}])
        self.assertEqual(late, {"accepted": False, "highestFence": holder2.fence})
        self.assertEqual(table.row(self.correlation_id), {"state": "step-2-done", "writer": "lambda-2", "fence": holder2.fence})
        # Holder 1's lease fenced itself before the server let holder 2 in.
        self.assertLess(marks["holder1_lost"], marks["holder2_granted"])
        self.assertFalse(holder1.release())
        self.assertTrue(holder2.release())


class FsmSeedOnSqlite(FsmSeed):
    STORE = None


class FsmSeedOnMemory(FsmSeed):
    STORE = "memory:"


del FsmSeed  # only its subclasses run


if __name__ == "__main__":
    unittest.main()
