"""A real headless Chromium for the report tests, driven over the DevTools protocol on a pipe.

    with Browser.start(tmp_path / "profile") as browser:
        page = browser.open(path)          # loads the file, waits for its load event
        page.messages                      # console calls, exceptions, log entries
        page.requests                      # every URL the page asked for
        page.evaluate("document.title")    # run JavaScript in the page
        png = page.screenshot()

Chromium runs with ``--remote-debugging-pipe``: it reads protocol messages (JSON, each ended by
a NUL byte) on file descriptor 3 and writes on 4, so no port is opened and no WebSocket client
is needed. The flags keep it off the network and out of the user's profile: a fresh
``--user-data-dir`` per browser, no background networking, component updates, sync or QUIC.
`find_chromium` is where the tests look for it (``$CHROMIUM``, then ``chromium``,
``chromium-browser``, ``google-chrome`` on the PATH); the Makefile's test target installs
Debian's ``chromium`` where it can.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe")
TIMEOUT_S = 60.0


def find_chromium() -> str | None:
    """The Chromium executable, or None when this machine has none."""
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named) or (named if os.access(named, os.X_OK) else None)
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


class Browser:
    """One headless Chromium process (a context manager; closing it ends the process)."""

    def __init__(self, process: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self._process, self._write, self._read = process, write_fd, read_fd
        self._buffer, self._next_id, self.events = b"", 0, []

    @classmethod
    def start(cls, profile: Path, *, width: int = 1200, height: int = 1600) -> Browser:
        executable = find_chromium()
        if executable is None:
            raise FileNotFoundError("no Chromium found ($CHROMIUM, chromium, chromium-browser, "
                                    "google-chrome)")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def descriptors() -> None:  # in the child: its fd 3 reads, fd 4 writes
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            preexec_fn=descriptors, close_fds=False, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        return cls(process, to_browser_w, from_browser_r)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError):
            self.call("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._write, self._read):
            os.close(fd)

    def call(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, *, session: str, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method and e.get("sessionId") == session
                      for e in self.events):
            self.events.append(self._receive(deadline))

    def open(self, path: Path) -> Page:
        """A new tab showing the file `path`, after its load event."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        self.wait_for("Page.loadEventFired", session=session)
        return Page(self, session)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed the protocol pipe (it exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)


class Page:
    """A loaded tab."""

    def __init__(self, browser: Browser, session: str) -> None:
        self._browser, self._session = browser, session

    def _events(self, *methods: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self._browser.events
                if e.get("sessionId") == self._session and e.get("method") in methods]

    @property
    def messages(self) -> list[str]:
        """Every console call, uncaught exception and browser log entry of the page, as text."""
        texts = [f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                     for a in p["args"])
                 for p in self._events("Runtime.consoleAPICalled")]
        texts += [f"exception: {p['exceptionDetails'].get('exception', {}).get('description')}"
                  f" ({p['exceptionDetails']['text']})"
                  for p in self._events("Runtime.exceptionThrown")]
        texts += [f"log {p['entry']['level']}: {p['entry']['text']}"
                  for p in self._events("Log.entryAdded")]
        return texts

    @property
    def requests(self) -> list[str]:
        """The URLs the page requested (the page itself included)."""
        return [p["request"]["url"] for p in self._events("Network.requestWillBeSent")]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self._browser.call("Runtime.evaluate", {"expression": expression,
                                                         "returnByValue": True},
                                    session=self._session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, *, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page)."""
        params = {"format": "png", "captureBeyondViewport": full_page}
        data = self._browser.call("Page.captureScreenshot", params, session=self._session)
        return base64.b64decode(data["data"])
