"""Every process logs in one format: `TIME level subsystem: event key=value`.

Each role runs as a real process with its log going to a file; the test
makes it write a line of every level it has (debug for requests, info for
start and stop, warn for a dependency that fails, error for a fault it
cannot work around), then reads the whole file and checks every line
against the format of docs/internals/base.md, not only the ones it asked
for. A line that breaks the format (an event with a space in it, an
unquoted value with a space, a missing level) fails the test with the line.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from support import Service, free_port, marquee_bin, repo_path

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^\s"]*)'
LINE_RE = re.compile(
    rf"^(?P<time>{TIME}) (?P<level>debug|info|warn|error) "
    rf"(?P<subsystem>[a-z][a-z0-9_]*): (?P<event>[a-z][a-z0-9_]*)"
    rf"(?: [a-z][a-z0-9_.]*={VALUE})*$")

DEMO = repo_path("data", "demo", "catalog.json")


def log_lines(svc):
    """The process's own lines: support.Service adds '---- start' lines."""
    return [line for line in svc.log().splitlines()
            if line and not line.startswith("---- ")]


class LogFormatTest(unittest.TestCase):

    def check_lines(self, role, lines):
        """Every line matches; returns the events seen, by level."""
        seen = {}
        for line in lines:
            m = LINE_RE.match(line)
            self.assertIsNotNone(m, f"{role} wrote a line out of format:\n"
                                    f"{line}")
            seen.setdefault(m["level"], set()).add(
                f"{m['subsystem']}: {m['event']}")
        return seen

    def test_catalog_and_booking(self):
        dead = f"http://127.0.0.1:{free_port()}"
        catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO,
            "catalog.admin_token": "t", "catalog.notify_urls": dead,
            "http.access_log": "true"})
        # A booking whose catalog is gone: fetching an unknown show warns.
        lost = Service("booking", flags={"booking.catalog_url": dead,
                                         "http.access_log": "true"})
        booking = Service("booking", flags={
            "booking.catalog_url": catalog.url, "http.access_log": "true"})
        try:
            status, _, _ = lost.request("GET", "/v1/shows/1/seats")
            self.assertEqual(status, 503)
            status, _, _ = booking.request("GET", "/v1/shows/1/seats")
            self.assertEqual(status, 200)
            # A show the catalog must announce to a subscriber that is
            # down: the undelivered event is a warning.
            status, _, _ = catalog.request(
                "POST", "/v1/admin/shows/5/cancel", body=b"{}",
                headers={"Authorization": "Bearer t",
                         "Content-Type": "application/json"})
            self.assertEqual(status, 200)
            self.assertEqual(lost.stop(), 0)
            self.assertEqual(booking.stop(), 0)
            self.assertEqual(catalog.stop(), 0)

            cat = self.check_lines("catalog", log_lines(catalog))
            self.assertIn("http: request", cat.get("debug", set()))
            self.assertIn("http: listening", cat.get("info", set()))
            self.assertIn("catalog: demo_loaded", cat.get("info", set()))
            self.assertIn("store: migration_applied", cat.get("info", set()))
            self.assertTrue(
                {"catalog: show_event_undelivered",
                 "catalog: show_events_closed"} & cat.get("warn", set()),
                cat)

            bk = self.check_lines("booking", log_lines(booking))
            self.assertIn("http: request", bk.get("debug", set()))
            self.assertIn("booking: loaded", bk.get("info", set()))
            self.assertIn("http: stopped", bk.get("info", set()))

            lo = self.check_lines("booking", log_lines(lost))
            self.assertIn("booking: catalog_unreachable",
                          lo.get("warn", set()))
        finally:
            for svc in (lost, booking, catalog):
                svc.close()

    def test_error_line_when_the_database_cannot_open(self):
        """A role that cannot open its database says so in one error line
        of the same format and exits non-zero."""
        svc = Service("booking", start=False)
        try:
            blocker = os.path.join(svc.tmpdir, "file")
            with open(blocker, "w") as f:
                f.write("not a folder")
            proc = subprocess.run(
                [marquee_bin(), "booking", f"--http.port={free_port()}",
                 f"--store.path={blocker}/sub/booking.db"],
                cwd=svc.tmpdir, env=svc.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertNotEqual(proc.returncode, 0)
            lines = proc.stderr.decode().splitlines()
            seen = self.check_lines("booking", lines)
            self.assertIn("error", seen, lines)
        finally:
            svc.close()

    def test_payment(self):
        """Payment's start, requests and stop, and a charge the simulated
        provider fails (the answer is a problem, the log stays in form)."""
        with Service("payment", flags={"http.access_log": "true"}) as pay:
            for token in ("tok_visa", "tok_fail", "tok_decline"):
                body = json.dumps({"amount": 1000, "currency": "INR",
                                   "reference": "logs-1",
                                   "customer_id": "cust-logs",
                                   "card": {"token": token}}).encode()
                status, _, _ = pay.request(
                    "POST", "/v1/charges", body=body,
                    headers={"Content-Type": "application/json",
                             "Idempotency-Key": f"logs-{token}"})
                self.assertIn(status, (201, 402, 502), token)
            status, _, _ = pay.request("POST", "/v1/charges", body=b"{",
                                       headers={"Content-Type":
                                                "application/json"})
            self.assertEqual(status, 400)
            self.assertEqual(pay.stop(), 0)
            seen = self.check_lines("payment", log_lines(pay))
            self.assertIn("http: request", seen.get("debug", set()))
            self.assertIn("payment: provider_started",
                          seen.get("info", set()))
            self.assertIn("http: stopped", seen.get("info", set()))

    def test_notify(self):
        """Notify's start (with the demo key's warning), a ticket issued
        from the queue, a poison event retried, requests and stop."""
        tmp = tempfile.mkdtemp(prefix="marquee-logs-notify-")
        queue = os.path.join(tmp, "queue.db")
        event = {"id": "logs-1", "type": "booking.confirmed",
                 "booking_id": "7-logs", "show_id": 7,
                 "customer_id": "cust-logs", "seats": ["A1"],
                 "total": 1000, "currency": "INR", "occurred_at": 1}
        try:
            with Service("notify", flags={"mq.path": queue,
                                          "notify.retry_ms": "50",
                                          "http.access_log": "true"}) as n:
                for mid, body in (("m-1", json.dumps(event)),
                                  ("m-2", "not json")):
                    subprocess.run(
                        [marquee_bin(), "mq", "publish",
                         f"--mq.path={queue}", "--topic=booking.confirmed",
                         f"--id={mid}", f"--body={body}"],
                        env=n.env, check=True, stdout=subprocess.DEVNULL,
                        timeout=30)
                deadline = time.monotonic() + 15
                while "event_failed" not in n.log() or n.request(
                        "GET", "/v1/tickets/7-logs",
                        headers={"X-Customer-Id": "cust-logs"})[0] != 200:
                    self.assertLess(time.monotonic(), deadline, n.log())
                    time.sleep(0.05)
                self.assertEqual(n.stop(), 0)
                seen = self.check_lines("notify", log_lines(n))
                self.assertIn("http: request", seen.get("debug", set()))
                self.assertIn("notify: consumer_started",
                              seen.get("info", set()))
                self.assertIn("notify: ticket_issued", seen.get("info", set()))
                self.assertIn("notify: demo_ticket_key",
                              seen.get("warn", set()))
                self.assertIn("notify: event_failed", seen.get("warn", set()))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_loadgen(self):
        """The load generator logs its start and progress the same way."""
        with Service("catalog", flags={"catalog.demo": "true",
                                       "catalog.demo_file": DEMO}) as cat, \
                Service("booking",
                        flags={"booking.catalog_url": cat.url}) as bk:
            proc = subprocess.run(
                [marquee_bin(), "loadgen", f"--loadgen.target={bk.url}",
                 "--loadgen.rate=50", "--loadgen.duration_s=1",
                 "--loadgen.connections=2", "--loadgen.hot_show=1",
                 "--loadgen.cold_shows="],
                cwd=bk.tmpdir, env=bk.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            lines = proc.stderr.decode().splitlines()
            self.assertEqual(proc.returncode, 0, "\n".join(lines))
            seen = self.check_lines("loadgen", lines)
            self.assertIn("loadgen: start", seen.get("info", set()), lines)


if __name__ == "__main__":
    unittest.main()
