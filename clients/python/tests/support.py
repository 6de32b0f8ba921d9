"""Real holdfast servers for the tests: ``holdfast serve`` started as a child process on a free port.

The CLI is ``$HOLDFAST_CLI`` (default: the checkout's built ``dist/src/cli/main.js``, so run
``npm run build`` first) run by ``$HOLDFAST_NODE`` (default ``node``). Every server is stopped by
its test (``with Server(...)``, ``addCleanup``), any left at exit are stopped by an ``atexit`` hook,
and on Linux each one is told to end when the test process dies, so no server outlives the run.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

REPO = Path(__file__).resolve().parents[3]
CLI = Path(os.environ.get("HOLDFAST_CLI") or REPO / "dist" / "src" / "cli" / "main.js")
NODE = os.environ.get("HOLDFAST_NODE") or shutil.which("node") or "node"

_running: Set["Server"] = set()


def _end_with_parent() -> None:  # runs in the child, before exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - best effort; atexit and the tests stop it anyway
            pass


class Server:
    """``holdfast serve`` over ``store`` (default: a fresh SQLite file). ``url`` once started."""

    def __init__(self, store: Optional[str] = None, *, max_wait: Optional[str] = None,
                 tokens: Optional[List[Dict[str, Any]]] = None, port: int = 0) -> None:
        self._dir = tempfile.mkdtemp(prefix="holdfast-py-")
        self.store = store or f"sqlite:{os.path.join(self._dir, 'holdfast.db')}"
        self.max_wait = max_wait
        self.tokens = tokens
        self.port = port
        self.url = ""
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._stderr: List[str] = []

    def start(self) -> "Server":
        if not CLI.exists():
            raise RuntimeError(f"the holdfast CLI is not built at {CLI}: run `npm run build` (or set HOLDFAST_CLI)")
        args = [NODE, str(CLI), "serve", "--store", self.store, "--port", str(self.port), "--log-level", "warn"]
        if self.max_wait is not None:
            args += ["--max-wait", self.max_wait]
        if self.tokens is not None:
            path = os.path.join(self._dir, "tokens.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.tokens, f)
            args += ["--tokens", path]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOLDFAST_")}
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=self._dir,
            preexec_fn=_end_with_parent,
        )
        _running.add(self)
        found = threading.Event()

        def read() -> None:
            assert self._process is not None and self._process.stderr is not None
            for raw in self._process.stderr:
                line = raw.decode("utf-8", "replace")
                self._stderr.append(line)
                match = re.search(r"serving (http://\S+) ", line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while not found.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"holdfast serve did not start: {''.join(self._stderr)}")
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Graceful stop (SIGTERM, as an operator would), killed if it takes longer than 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._reader.join(5)
        if process.stderr is not None:
            process.stderr.close()
        _running.discard(self)

    def start_for_module(self) -> None:
        """``setUpModule = SERVER.start_for_module``: one server for a test module, stopped after it."""
        self.start()
        unittest.addModuleCleanup(self.cleanup)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.cleanup()


def unique(prefix: str) -> str:
    """A key prefix of its own for one test."""
    return f"{prefix}-{os.urandom(4).hex()}"
