"""The stream's dashboard in a real browser: headless Chromium (Debian's), driven over the
DevTools protocol.

- While `iotinfer demo` runs (embedded: no server needed), the page updates live; once
  everything is counted, the numbers it shows equal the store's results and the stream's
  metrics. A screenshot is kept (--artifacts).
- Against the real broker (--brokers): a dead letter whose error and producer carry markup is
  shown as text, and nothing of it runs.

  dashboard_browser_test.py --iotinfer build/iotinfer [--brokers 127.0.0.1:9092] [--artifacts DIR]
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

import websocket

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from waiting import wait_for  # noqa: E402 (tests/waiting.py, beside this directory)

ARGS = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A process whose stderr lines are collected as they come."""

    def __init__(self, args):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.out = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern):
        for line in list(self.lines):
            match = re.search(pattern, line)
            if match:
                return match
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, _ = self.proc.communicate()
        return self.proc.returncode


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, url):
        self.profile = tempfile.mkdtemp(prefix="iotinfer-chromium-")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium:
            raise unittest.SkipTest("no chromium on PATH (./dev setup installs Debian's)")
        # --no-sandbox: Chromium's sandbox refuses to run as root, which CI and containers are.
        self.proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--window-size=1280,1700", f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")

        def written():
            if not os.path.exists(port_file):
                return None
            with open(port_file) as f:
                return f.read().split()

        port = int(wait_for("Chromium's DevTools port", written)[0])
        pages = wait_for("the page target", lambda: [t for t in json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list")) if t["type"] == "page"])
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def rows(self, table_id):
        """The text of each cell of a table's body, row by row."""
        return json.loads(self.eval(f"JSON.stringify([...document.querySelectorAll('#{table_id} tbody tr')]"
                                    ".map(tr => [...tr.children].map(td => td.textContent)))"))

    def text(self, element_id):
        """The element's text; empty while the page (or the element) is not there yet."""
        return self.eval(f"(document.getElementById('{element_id}') || {{}}).textContent || ''")

    def screenshot(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            shutil.rmtree(self.profile, ignore_errors=True)


def number(text):
    return int(text.replace(",", "")) if text not in ("", "-") else None




def metric_values(url, name):
    text = urllib.request.urlopen(url + "metrics").read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(name + r'\{producer_id="([^"]+)"\} (\S+)', text)}


class DashboardTest(unittest.TestCase):
    def test_the_page_follows_the_demo_live_and_ends_equal_to_the_store_and_the_metrics(self):
        images = 9000
        out = tempfile.mkdtemp(prefix="iotinfer-dashboard-")
        demo = Process([ARGS.iotinfer, "demo", "--out", out, "--images", str(images), "--rate", "1500",
                        "--http-port", "0", "--linger", "5m"])
        browser = None
        try:
            found = wait_for("the dashboard's address", lambda: demo.find(r"dashboard: (http://\S+/)"), 120)
            url = found.group(1)
            browser = Browser(url)
            # Live: the page takes events while the devices still send.
            first = wait_for("a first update with records", lambda: number(browser.text("consumed")), 60)
            wait_for("a later update with more records", lambda: (number(browser.text("consumed")) or 0) > first, 30)
            self.assertIsNone(demo.find("everything is counted"), "the demo was over before the page saw it run")
            self.assertEqual(browser.text("connection"), "live")

            wait_for("the demo to count everything", lambda: demo.find("everything is counted"), 180)

            store = sqlite3.connect(os.path.join(out, "iotinfer.db"))

            def stored():
                return {p: (total, incorrect) for p, total, incorrect in store.execute(
                    "SELECT producer_id, total, incorrect_count FROM incorrect_inference_results")}

            # Device 3 sends some images damaged, which infer dead-letters: fewer are counted.
            def settled():
                rows = browser.rows("devices")
                counted = number(browser.text("consumed"))
                total = sum(t for t, _ in stored().values())
                shown = sum(number(r[5]) for r in rows)
                return rows if 0.9 * images < total < images and counted == total == shown else None

            rows = wait_for("the page to show every image counted", settled, 30)
            page = {int(r[0]): (number(r[5]), number(r[6]), r[1]) for r in rows}
            self.assertEqual({p: v[:2] for p, v in page.items()}, stored())
            # What was not counted was dead-lettered by infer, each one shown by its reason.
            damaged = images - sum(t for t, _ in stored().values())
            shown = []

            def dead_letters_shown():
                shown[:] = browser.rows("dead-reasons")
                return shown == [["undecodable-image", str(damaged)]]

            try:
                wait_for("the dead letters on the page", dead_letters_shown, 30)
            except AssertionError as e:  # seen under a loaded suite twice: what did it show?
                raise AssertionError(f"{e}: the page showed {shown} ({damaged} dead-lettered), "
                                     "the demo's last lines:\n" + "\n".join(demo.lines[-30:])) from None

            shown_images = metric_values(url, "iotinfer_producer_images_total")
            shown_incorrect = metric_values(url, "iotinfer_producer_incorrect_total")
            for producer, (total, incorrect, verdict) in page.items():
                self.assertEqual(shown_images[str(producer)], total, producer)
                self.assertEqual(shown_incorrect[str(producer)], incorrect, producer)
            verdicts = metric_values(url, "iotinfer_producer_verdict")
            codes = {"unknown": 0, "healthy": 1, "suspect": 2, "faulty": 3}
            self.assertEqual({p: codes[v[2]] for p, v in page.items()}, {int(p): v for p, v in verdicts.items()})
            faulty = sum(1 for v in page.values() if v[2] == "faulty")
            self.assertEqual(number(browser.text("faulty")), faulty)
            self.assertEqual(page[0][2], "healthy")  # the demo's devices 0 and 7 have no fault
            self.assertEqual(page[6][2], "faulty")   # noise and blur: about 59% wrong
            if ARGS.artifacts:
                browser.screenshot(os.path.join(ARGS.artifacts, "dashboard.png"))
        finally:
            if browser:
                browser.close()
            code = demo.stop()
            shutil.rmtree(out, ignore_errors=True)
        self.assertEqual(code, 0, "\n".join(demo.lines[-20:]))
        self.assertIn("device health", demo.out)

    def test_dead_letters_are_shown_as_text(self):
        self.assertTrue(ARGS.brokers, "needs --brokers")
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        run = uuid.uuid4().hex[:8]
        dlq = f"dashboard-dlq-{run}"
        accepted = f"dashboard-accepted-{run}"
        admin = AdminClient({"bootstrap.servers": ARGS.brokers})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in (dlq, accepted)]).values():
            future.result(30)
        evil = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">&amp; "quoted"'
        producer = Producer({"bootstrap.servers": ARGS.brokers})
        producer.produce(dlq, key=b"7", value=b"\x89PNG not really", headers=[
            ("producer_id", b"7"), ("error", evil.encode()), ("reason", b"undecodable-image"),
            ("failed-at", str(int(time.time() * 1e6)).encode()), ("source", b"images/0/42")])
        producer.produce(dlq, value=b"{}", headers=[
            ("error", b"no reason header"), ("failed-at", str(int(time.time() * 1e6)).encode())])
        producer.flush(30)

        work = tempfile.mkdtemp(prefix="iotinfer-dashboard-")
        port = free_port()
        stream = Process([ARGS.iotinfer, "stream", "--brokers", ARGS.brokers, "--topic", accepted,
                          "--group", f"dashboard-{run}", "--store", f"sqlite:{work}/s.db", "--health-topic", "",
                          "--dlq-topic", dlq, "--http-port", str(port)])
        browser = None
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for("the stream's endpoints", lambda: stream.find("/metrics on"), 60)
            browser = Browser(url)
            wait_for("both letters on the page", lambda: len(browser.rows("dead-latest")) == 2, 60)
            by_error = {row[4]: row for row in browser.rows("dead-latest")}
            self.assertIn(evil, by_error, "the error is shown as it is, as text")
            self.assertEqual(by_error[evil][2], "undecodable-image")
            self.assertEqual(by_error[evil][3], "7")
            self.assertEqual(by_error["no reason header"][2], "unknown")
            self.assertIsNone(browser.eval("window.pwned === undefined ? null : window.pwned"))
            self.assertEqual(browser.eval("document.querySelectorAll('main script, main img').length"), 0)
            self.assertEqual(sorted(browser.rows("dead-reasons")), [["undecodable-image", "1"], ["unknown", "1"]])
            if ARGS.artifacts:
                browser.screenshot(os.path.join(ARGS.artifacts, "dashboard-dead-letters.png"))
        finally:
            if browser:
                browser.close()
            code = stream.stop()
            shutil.rmtree(work, ignore_errors=True)
        self.assertEqual(code, 0, "\n".join(stream.lines[-20:]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--brokers", default="")
    parser.add_argument("--artifacts", default="")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
