"""Waits longer than the server's maxWaitMs (here 400 ms): resumed across the cuts with the same
request id, in the same queue place; a wait that ends without a grant leaves nothing queued."""
from __future__ import annotations

import threading
import time
import unittest
from typing import List, Tuple

from holdfast import Client, Lease, WaitTimeout

from .support import Server, unique

SERVER = Server(max_wait="400ms")

setUpModule = SERVER.start_for_module


class LongWaitTest(unittest.TestCase):
    def setUp(self) -> None:
        self.client = Client(SERVER.url)
        self.addCleanup(self.client.close)
        self.key = unique("long") + "/lb"

    def waiters(self) -> List[str]:
        return [w["owner"] for w in self.client.list(prefix=self.key)["waiters"]]

    def until(self, condition: "object", what: str) -> None:
        for _ in range(500):
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.01)
        self.fail(what)

    def test_queue_place_kept_across_cuts(self) -> None:
        self.assertEqual(self.client.info()["maxWaitMs"], 400)
        holder = self.client.acquire(self.key, owner="holder")
        granted: List[Tuple[str, Lease]] = []
        lock = threading.Lock()

        def wait(owner: str) -> None:
            with Client(SERVER.url) as mine:
                lease = mine.acquire(self.key, owner=owner, wait_ms="20s")
                with lock:
                    granted.append((owner, lease))
                time.sleep(0.05)
                lease.release()

        first = threading.Thread(target=wait, args=("first",))
        first.start()
        self.until(lambda: self.waiters() == ["first"], "the first waiter did not queue")
        second = threading.Thread(target=wait, args=("second",))
        second.start()
        self.until(lambda: self.waiters() == ["first", "second"], "the second waiter did not queue")
        # Several cuts of 400 ms each go by; the queue keeps its order all along.
        time.sleep(1.5)
        self.assertEqual(self.waiters(), ["first", "second"])
        holder.release()
        first.join(20)
        second.join(20)
        self.assertEqual([owner for owner, _ in granted], ["first", "second"])
        self.assertLess(granted[0][1].fence, granted[1][1].fence)

    def test_timeout_after_several_cuts_cancels_the_wait(self) -> None:
        holder = self.client.acquire(self.key, owner="holder")
        self.addCleanup(holder.release)
        started = time.monotonic()
        with self.assertRaises(WaitTimeout) as caught:
            self.client.acquire(self.key, owner="impatient", wait_ms=1000)
        self.assertGreaterEqual(time.monotonic() - started, 1.0)
        self.assertGreaterEqual(caught.exception.waited_ms, 1000)
        self.assertTrue(caught.exception.message.startswith(f"Waited {caught.exception.waited_ms} ms"))
        self.assertEqual([h.owner for h in caught.exception.holders], ["holder"])
        # Cancelled by its id at once, not left parked for the server's waiter TTL.
        self.assertEqual(self.waiters(), [])

    def test_grant_after_a_cut(self) -> None:
        holder = self.client.acquire(self.key, owner="holder", ttl_ms=30_000)
        threading.Timer(0.9, holder.release).start()
        lease = self.client.acquire(self.key, owner="patient", wait_ms="10s")
        self.assertGreater(lease.fence, holder.fence)
        self.assertEqual(holder.state, "released")
        # Anchored at the grant, not at the start of the wait: far from self-fencing.
        self.assertGreater(lease.remaining, 20)
        lease.release()


if __name__ == "__main__":
    unittest.main()
