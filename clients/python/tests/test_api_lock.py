"""Seed 002 (Shipyard's api_lock), SPEC section 7.3, with the Python decorator on WSGI apps served by
``wsgiref``: instances A and B of an API share a holdfast server; while A's handler holds
``configdocs/update``, B (and A itself) answer 409 with Shipyard's sentence and ``Retry-After``; B
succeeds right after A's answer; when the server can't be reached for the release (instance C
talks to a second server over the same store, which is stopped during C's handler), C still
answers 200, the failure is logged, and the unreleased lock ends by its TTL. A Falcon-style
responder is locked the same way."""
from __future__ import annotations

import json
import os
import re
import socketserver
import threading
import time
import unittest
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from holdfast import Client, api_lock, responder_lock

from .support import Server

KEY = "configdocs/update"
SENTENCE = re.compile(r"^Blocked by another process: Another process is currently blocking this request with a lock "
                      r"for configdocs/update\. Lock expires in not more than (\d+) seconds$")

StartResponse = Callable[[str, List[Tuple[str, str]]], Any]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature of the base class
        pass


class Api:
    """One instance of the API: a WSGI app on its own port, locking through its own client."""

    def __init__(self, test: unittest.TestCase, app: Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.httpd = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        test.addCleanup(thread.join, 5)
        test.addCleanup(self.httpd.server_close)
        test.addCleanup(self.httpd.shutdown)


def post(url: str, user: Optional[str] = None) -> Tuple[int, Optional[str], Dict[str, Any]]:
    """POSTs to an API instance: status, Retry-After, JSON body."""
    headers = {"Content-Type": "application/json", **({"X-User": user} if user else {})}
    request = urllib.request.Request(f"{url}/configdocs", data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Retry-After"), json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Retry-After"), json.loads(error.read() or b"{}")


def ok(start_response: StartResponse, data: Dict[str, Any]) -> List[bytes]:
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class ShipyardTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Server().start()
        self.addCleanup(self.server.cleanup)

    def client(self, server: Server) -> Client:
        client = Client(server.url)
        self.addCleanup(client.close)
        return client

    def instance(self, name: str, client: Client, handler: Callable[[], None], ttl_ms: int = 60_000) -> Api:
        @api_lock(KEY, ttl_ms=ttl_ms, client=client, owner=lambda env: f"shipyard-{name}:{env.get('HTTP_X_USER', 'anonymous')}")
        def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
            handler()
            return ok(start_response, {"instance": name})

        return Api(self, app)

    def test_blocked_while_another_instance_holds_the_lock(self) -> None:
        entered, finish = threading.Event(), threading.Event()

        def slow() -> None:
            entered.set()
            finish.wait(30)

        a = self.instance("a", self.client(self.server), slow)
        b = self.instance("b", self.client(self.server), lambda: None)
        first: List[Tuple[int, Optional[str], Dict[str, Any]]] = []
        request = threading.Thread(target=lambda: first.append(post(a.url)))
        request.start()
        self.assertTrue(entered.wait(10))

        status, retry_after, body = post(b.url)
        self.assertEqual(status, 409)
        error = body["error"]
        self.assertEqual(error["code"], "LOCK_BUSY")
        match = SENTENCE.match(error["message"])
        self.assertIsNotNone(match, error["message"])
        assert match is not None
        self.assertTrue(59 <= int(match.group(1)) <= 60, error["message"])
        self.assertEqual(retry_after, match.group(1))
        self.assertEqual(error["holders"][0]["owner"], "shipyard-a:anonymous")
        self.assertEqual(error["holders"][0]["key"], KEY)
        self.assertIn('is held by owner "shipyard-a:anonymous"', error["detail"])
        self.assertEqual(post(a.url, user="ops")[0], 409, "not re-entrant: A itself is blocked too")

        finish.set()
        request.join(30)
        self.assertEqual(first[0][0], 200)
        # Released before A's answer left: B's next request succeeds at once.
        self.assertEqual(post(b.url), (200, None, {"instance": "b"}))

    def test_failed_release_never_fails_the_request(self) -> None:
        # Instance C talks to a second server over the same store; it goes away during C's handler.
        second = Server(self.server.store).start()
        self.addCleanup(second.cleanup)
        c = self.instance("c", self.client(second), second.stop, ttl_ms=3000)
        b = self.instance("b", self.client(self.server), lambda: None)
        with self.assertLogs("holdfast.wsgi", level="ERROR") as logs:
            self.assertEqual(post(c.url), (200, None, {"instance": "c"}))
        self.assertEqual(len(logs.records), 1)
        self.assertRegex(logs.output[0], r"release of the lock on configdocs/update failed; it will expire in not more than 3 seconds: .*cannot reach")
        # The unreleased lease blocks for not more than its TTL, then B gets the lock.
        status, retry_after, body = post(b.url)
        self.assertEqual(status, 409)
        match = SENTENCE.match(body["error"]["message"])
        assert match is not None, body
        self.assertIn(match.group(1), ("1", "2", "3"))
        self.assertEqual(retry_after, match.group(1))
        time.sleep(body["error"]["retryAfterMs"] / 1000 + 0.1)
        self.assertEqual(post(b.url)[0], 200)

    def test_shipyards_own_spelling_uses_the_server_of_the_environment(self) -> None:
        import holdfast.wsgi as wsgi

        previous = os.environ.get("HOLDFAST_SERVER")
        os.environ["HOLDFAST_SERVER"] = self.server.url
        self.addCleanup(self._restore_env, previous)
        wsgi._default_client = None
        self.addCleanup(self._reset_default_client)

        @api_lock("configdocs/update", ttl_ms=60000)
        def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
            return ok(start_response, {"holders": [l["owner"] for l in self.client(self.server).list(prefix=KEY)["locks"]]})

        api = Api(self, app)
        status, _, body = post(api.url)
        self.assertEqual(status, 200)
        self.assertEqual(len(body["holders"]), 1)
        self.assertRegex(body["holders"][0], r"^api@.+:\d+$")
        self.assertEqual(wsgi.default_client().url, self.server.url)

    @staticmethod
    def _restore_env(previous: Optional[str]) -> None:
        if previous is None:
            os.environ.pop("HOLDFAST_SERVER", None)
        else:
            os.environ["HOLDFAST_SERVER"] = previous

    @staticmethod
    def _reset_default_client() -> None:
        import holdfast.wsgi as wsgi

        if wsgi._default_client is not None:
            wsgi._default_client.close()
        wsgi._default_client = None

    def test_falcon_style_responder(self) -> None:
        client = self.client(self.server)
        seen: List[int] = []

        class Request:
            def __init__(self, environ: Dict[str, Any]) -> None:
                self.env = environ
                self.user = environ.get("HTTP_X_USER", "anonymous")

        class Response:
            def __init__(self) -> None:
                self.status = "200 OK"
                self.content_type = "application/json"
                self.text = "{}"
                self.headers: List[Tuple[str, str]] = []

            def set_header(self, name: str, value: str) -> None:
                self.headers.append((name, value))

        class ConfigDocs:
            @responder_lock(KEY, ttl_ms=30_000, client=client, owner=lambda req: f"falcon:{req.user}")
            def on_post(self, req: Request, resp: Response) -> None:
                held = client.list(prefix=KEY)["locks"]
                seen.append(len(held))
                resp.text = json.dumps({"holder": held[0]["owner"]})

        resource = ConfigDocs()

        def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
            req, resp = Request(environ), Response()
            resource.on_post(req, resp)
            body = resp.text.encode()
            start_response(resp.status, [("Content-Type", resp.content_type), ("Content-Length", str(len(body))), *resp.headers])
            return [body]

        api = Api(self, app)
        self.assertEqual(post(api.url, user="ops"), (200, None, {"holder": "falcon:ops"}))
        self.assertEqual(client.list(prefix=KEY)["locks"], [])
        blocker = client.acquire(KEY, owner="another-process", ttl_ms=20_000)
        self.addCleanup(blocker.release)
        status, retry_after, body = post(api.url)
        self.assertEqual(status, 409)
        self.assertIn(retry_after, ("19", "20"))
        self.assertRegex(body["error"]["message"], r"^Blocked by another process: .* not more than (19|20) seconds$")
        self.assertEqual(body["error"]["holders"][0]["owner"], "another-process")
        self.assertEqual(seen, [1], "the responder did not run while blocked")


if __name__ == "__main__":
    unittest.main()
