#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (a pipe: --remote-debugging-pipe,
so no websocket library is needed) for tests/tests/status_page.rs.

It opens the status page like a person would: the page's 401 challenge is answered with
the admin token as the Basic password (what a person types into the browser's login
prompt; the browser then sends it on the page's own polls). Then it answers one JSON
command per stdin line with one JSON line on stdout:

  {"cmd": "wait_state", "node": "127.0.0.1:9001", "state": "down", "timeout": 10}
      -> {"ok": true, "elapsed": 1.23, "state": "down"}   (polls the DOM every 50 ms)
  {"cmd": "eval", "expr": "document.title"}     -> {"ok": true, "value": ...}
  {"cmd": "screenshot", "path": "/tmp/x.png"}   -> {"ok": true, "bytes": 12345}
  {"cmd": "quit"}

The first line it prints is {"event": "ready", ...} once the page has drawn one answer.
"""

import argparse
import base64
import json
import os
import queue
import subprocess
import sys
import threading
import time


class Browser:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, chromium, profile, user, password):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # The shell puts the pipe ends on fds 3 and 4, where Chromium expects them.
        script = f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}'
        args = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--metrics-recording-only",
            "--mute-audio",
            "--hide-scrollbars",
            "--window-size=1280,1400",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "sh", *args],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(profile, "chromium.log"), "wb"),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.user, self.password = user, password
        self.next_id = 0
        self.lock = threading.Lock()
        self.waiting = {}
        self.auth_challenges = 0
        self.requests_seen = 0
        self.session = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.lock:
                    for q in self.waiting.values():
                        q.put({"error": {"message": "chromium closed the pipe"}})
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self.lock:
                        q = self.waiting.pop(msg["id"], None)
                    if q is not None:
                        q.put(msg)
                else:
                    self._event(msg)

    def _event(self, msg):
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Fetch.authRequired":
            # The browser's login prompt, answered: any user name, the token as password.
            self.auth_challenges += 1
            self.send_async(
                "Fetch.continueWithAuth",
                {
                    "requestId": params["requestId"],
                    "authChallengeResponse": {
                        "response": "ProvideCredentials",
                        "username": self.user,
                        "password": self.password,
                    },
                },
            )
        elif method == "Fetch.requestPaused":
            self.requests_seen += 1
            self.send_async("Fetch.continueRequest", {"requestId": params["requestId"]})

    def send_async(self, method, params=None):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if self.session is not None:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        return mid

    def send(self, method, params=None, timeout=20, browser_level=False):
        q = queue.Queue()
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            self.waiting[mid] = q
        msg = {"id": mid, "method": method, "params": params or {}}
        if self.session is not None and not browser_level:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{method}: no answer in {timeout}s")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url):
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser_level=True)
        attached = self.send(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            browser_level=True,
        )
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        # A person looks at the page: visible and focused (a hidden page polls every 5 s).
        self.send("Page.bringToFront")
        self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        # Every request pauses so that a 401 challenge reaches us (handleAuthRequests).
        self.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}], "handleAuthRequests": True})
        self.send("Page.navigate", {"url": url})

    def eval(self, expr):
        result = self.send(
            "Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expr}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def screenshot(self, path):
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        data = base64.b64decode(shot["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def close(self):
        try:
            self.send("Browser.close", browser_level=True, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def node_state_expr(node):
    sel = json.dumps(f'#nodes tr[data-node="{node}"]')
    return f"(() => {{ const r = document.querySelector({sel}); return r ? r.dataset.state : null; }})()"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--url", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--user", default="operator")
    ap.add_argument("--password", required=True)
    ap.add_argument("--ready-timeout", type=float, default=20)
    args = ap.parse_args()

    def out(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    browser = Browser(args.chromium, args.profile, args.user, args.password)
    try:
        browser.open(args.url)
        deadline = time.monotonic() + args.ready_timeout
        polls = None
        while time.monotonic() < deadline:
            try:
                polls = browser.eval("document.body ? document.body.dataset.polls || null : null")
            except RuntimeError:
                polls = None  # the page is still navigating
            if polls:
                break
            time.sleep(0.1)
        if not polls:
            conn = browser.eval("document.getElementById('conn') && document.getElementById('conn').textContent")
            out({"event": "failed", "why": f"the page drew nothing in {args.ready_timeout}s", "conn": conn})
            return 1
        out({
            "event": "ready",
            "auth_challenges": browser.auth_challenges,
            "requests": browser.requests_seen,
            "visibility": browser.eval("document.visibilityState"),
        })
        for line in sys.stdin:
            cmd = json.loads(line)
            kind = cmd.get("cmd")
            try:
                if kind == "wait_state":
                    start = time.monotonic()
                    expr = node_state_expr(cmd["node"])
                    state = None
                    while time.monotonic() - start < cmd.get("timeout", 10):
                        state = browser.eval(expr)
                        if state == cmd["state"]:
                            break
                        time.sleep(0.05)
                    out({"ok": state == cmd["state"], "elapsed": time.monotonic() - start, "state": state})
                elif kind == "eval":
                    out({"ok": True, "value": browser.eval(cmd["expr"])})
                elif kind == "screenshot":
                    out({"ok": True, "bytes": browser.screenshot(cmd["path"])})
                elif kind == "quit":
                    out({"ok": True, "auth_challenges": browser.auth_challenges, "requests": browser.requests_seen})
                    break
                else:
                    out({"ok": False, "error": f"unknown command {kind!r}"})
            except Exception as e:  # reported to the test, which fails with it
                out({"ok": False, "error": str(e)})
        return 0
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
