"""What the client puts on the wire, recorded by a plain HTTP server: every state-changing request
carries a JSON object body with ``Content-Type: application/json`` (the server refuses others, so a
web page's form can't change anything), no request carries an ``Origin``, the token goes in
``Authorization``, and keys and owners are escaped as one path segment."""
from __future__ import annotations

import json
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List

from holdfast import Client

LEASE_ID = "L" * 22
LEASE: Dict[str, Any] = {
    "id": LEASE_ID, "owner": "me", "resources": [{"key": "a/b", "mode": "exclusive", "limit": None}], "fence": 7,
    "acquiredAt": "2026-01-01T00:00:00.000Z", "expiresAt": "2026-01-01T00:00:30.000Z", "ttlMs": 30000,
    "requestId": None, "metadata": {}, "lockDelayMs": 0,
}


class Recorder(BaseHTTPRequestHandler):
    seen: List[Dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature of the base class
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": raw})
        body: Dict[str, Any]
        if self.path.startswith("/v1/leases") and self.command == "POST":
            status, body = (201 if self.path == "/v1/leases" else 200), {"lease": LEASE, "now": "2026-01-01T00:00:00.000Z"}
        elif self.command == "DELETE" and self.path.startswith("/v1/leases/"):
            status, body = 200, {"released": True}
        elif self.command == "DELETE":
            status, body = 200, {"released": 1}
        elif self.path.startswith("/v1/history"):
            status, body = 200, {"events": []}
        else:
            status, body = 200, {"locks": [], "waiters": [], "now": "2026-01-01T00:00:00.000Z"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer


class WireTest(unittest.TestCase):
    def test_headers_and_bodies(self) -> None:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        self.addCleanup(httpd.server_close)
        self.addCleanup(httpd.shutdown)
        port = httpd.server_address[1]
        with Client(f"http://127.0.0.1:{port}", token="t" * 20) as client:
            lease = client.acquire("a/b", owner="me", auto_renew=False)
            lease.renew()
            self.assertTrue(lease.release())
            client.release_owner("task/17 ü", key="a/b")
            client.force_release("apps/42/task")
            client.list(prefix="apps/")
            client.history(key="a/b", limit=5)
            client.renew(LEASE_ID, ttl_ms="1m")
        calls = [(c["method"], c["path"]) for c in Recorder.seen]
        self.assertEqual(calls, [
            ("POST", "/v1/leases"), ("POST", f"/v1/leases/{LEASE_ID}/renew"), ("DELETE", f"/v1/leases/{LEASE_ID}"),
            ("DELETE", "/v1/owners/task%2F17%20%C3%BC/leases?key=a%2Fb"), ("DELETE", "/v1/locks/apps%2F42%2Ftask"),
            ("GET", "/v1/locks?prefix=apps%2F"), ("GET", "/v1/history?key=a%2Fb&limit=5"), ("POST", f"/v1/leases/{LEASE_ID}/renew"),
        ])
        for call in Recorder.seen:
            headers = {k.lower(): v for k, v in call["headers"].items()}
            self.assertNotIn("origin", headers, call)
            self.assertEqual(headers["authorization"], "Bearer " + "t" * 20)
            self.assertEqual(headers["host"], f"127.0.0.1:{port}")
            if call["method"] in ("POST", "DELETE"):
                self.assertEqual(headers["content-type"], "application/json", call)
                self.assertIsInstance(json.loads(call["body"]), dict, call)
            else:
                self.assertEqual(call["body"], b"", call)
        acquire = json.loads(Recorder.seen[0]["body"])
        self.assertEqual(acquire["owner"], "me")
        self.assertEqual(acquire["resources"], [{"key": "a/b", "mode": "exclusive"}])
        self.assertEqual((acquire["ttlMs"], acquire["waitMs"]), (30000, 0))
        self.assertRegex(acquire["id"], r"^[A-Za-z0-9_-]{22}$")
        self.assertEqual(json.loads(Recorder.seen[-1]["body"]), {"ttlMs": 60000})


if __name__ == "__main__":
    unittest.main()
