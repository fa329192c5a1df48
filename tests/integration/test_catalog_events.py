"""Show events of the catalog, and the per-show no_orphan_seats rule.

A subscriber is played by a small HTTP server in this process, whose
answers the tests script (500 twice, a 4xx, ...); the catalog is the real
binary, started with --catalog.notify_urls pointing at it.  Every catalog
response is also checked against docs/api/openapi.yaml.
"""

import datetime
import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from support import ApiSchema, Service, free_port, marquee_bin

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
EVENTS_PATH = "/internal/v1/show-events"
# How long an event may take to arrive; deliveries take milliseconds, the
# slack is for a loaded machine running the ASan build.
EVENT_WAIT_S = 10.0
# How long to watch for a delivery that must not happen.
QUIET_S = 0.8

LAYOUT = {
    "categories": [{"code": "classic", "name": "Classic"}],
    "rows": [{"label": "A", "category": "classic",
              "seats": [1, 2, 3, None, 4, 5]}],
}


def future(days, hour):
    """An RFC 3339 UTC time `days` from today at hour:00."""
    d = datetime.datetime.now(datetime.timezone.utc).date()
    t = datetime.datetime.combine(d + datetime.timedelta(days=days),
                                  datetime.time(hour, 0),
                                  tzinfo=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Subscriber:
    """An HTTP server that records every request and answers as scripted:
    the statuses in `script` first, one per request, then `status`."""

    def __init__(self):
        self.requests = []  # dicts: path, headers, body, status, at
        self.script = []
        self.status = 202
        self.cond = threading.Condition()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with owner.cond:
                    status = (owner.script.pop(0) if owner.script
                              else owner.status)
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw
                    owner.requests.append({
                        "path": self.path,
                        "headers": {k.lower(): v
                                    for k, v in self.headers.items()},
                        "body": body, "status": status,
                        "at": time.monotonic()})
                    owner.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def for_show(self, show_id):
        with self.cond:
            return [r for r in self.requests
                    if isinstance(r["body"], dict)
                    and r["body"].get("show_id") == show_id]

    def wait_for(self, show_id, count, timeout=EVENT_WAIT_S):
        """The requests about show_id, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests
                       if isinstance(r["body"], dict)
                       and r["body"].get("show_id") == show_id]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    break
                self.cond.wait(left)
        if len(got) < count:
            raise AssertionError(f"{len(got)} requests about show {show_id} "
                                 f"within {timeout:.0f} s, {count} expected: "
                                 f"{got}")
        return got


class EventsCase(unittest.TestCase):
    """One catalog per test class, told of subscriber URLs by notify_urls()."""

    @classmethod
    def notify_urls(cls):
        return ""

    @classmethod
    def setUpClass(cls):
        cls.api = ApiSchema.default()
        cls.prepare()
        cls.svc = Service("catalog", flags={
            "catalog.admin_token": TOKEN,
            "catalog.notify_urls": cls.notify_urls()})
        cls.counter = 0

    @classmethod
    def prepare(cls):
        """Runs before the catalog starts."""

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.svc.stop()
            assert code == 0, f"catalog exited with {code} after SIGTERM"
        finally:
            cls.svc.close()

    def call(self, method, path, body=None, headers=None, expect=None):
        status, got, raw = self.svc.request(method, path, body, headers)
        data = self.api.check(method, self.api.template_for(path), status,
                              got, raw)
        if expect is not None:
            self.assertEqual(status, expect, f"{method} {path}: {raw[:600]}")
        return status, got, data

    def admin(self, path, body=None, expect=None):
        return self.call("POST", path, body, ADMIN, expect=expect)

    def world(self):
        """A fresh city, cinema, screen and movie; returns (screen, movie)."""
        type(self).counter += 1
        name = f"Eventville {self.counter} {self.id().rsplit('.', 1)[-1]}"
        name = name[:64]
        _, _, city = self.admin("/v1/admin/cities", {
            "name": name, "slug": f"eventville-{self.counter}",
            "utc_offset_minutes": 330,
            "currency": "INR"}, expect=201)
        _, _, cinema = self.admin("/v1/admin/cinemas", {
            "city_id": city["id"], "name": "Marquee Events",
            "address": "1 Event Road"}, expect=201)
        _, _, screen = self.admin(
            f"/v1/admin/cinemas/{cinema['id']}/screens",
            {"name": "Screen 1", "layout": LAYOUT}, expect=201)
        _, _, movie = self.admin("/v1/admin/movies", {
            "title": f"{name} Story", "language": "Hindi",
            "genres": ["drama"], "duration_minutes": 100,
            "certificate": "UA", "release_date": "2026-11-01"}, expect=201)
        return screen, movie

    def show_body(self, screen, movie, days=3, hour=10, **extra):
        body = {"movie_id": movie["id"], "screen_id": screen["id"],
                "starts_at": future(days, hour),
                "prices": {"classic": 25000}}
        body.update(extra)
        return body

    def make_show(self, days=3, hour=10, **extra):
        screen, movie = self.world()
        _, _, show = self.admin("/v1/admin/shows",
                                self.show_body(screen, movie, days, hour,
                                               **extra), expect=201)
        return show

    def wait_log(self, text, timeout=EVENT_WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.svc.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout:.0f} s; "
                             f"log tail:\n{self.svc.log_tail()}")


class DeliveryTest(EventsCase):
    """A subscriber that answers: events arrive, in full, and are retried."""

    @classmethod
    def prepare(cls):
        cls.sub = Subscriber()

    @classmethod
    def notify_urls(cls):
        return f" {cls.sub.url} "

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sub.close()

    def test_scheduled_show_is_announced(self):
        show = self.make_show()
        (req,) = self.sub.wait_for(show["id"], 1)
        self.assertEqual(req["path"], EVENTS_PATH)
        self.assertEqual(req["body"], {"type": "show.scheduled",
                                       "show_id": show["id"],
                                       "version": show["version"]})
        self.assertEqual(show["version"], 1)
        self.assertEqual(req["headers"]["content-type"], "application/json")
        self.assertEqual(req["headers"]["user-agent"], "marquee")
        self.assertEqual(req["status"], 202)
        time.sleep(QUIET_S)
        self.assertEqual(len(self.sub.for_show(show["id"])), 1)

    def test_cancelled_show_is_announced_with_its_new_version(self):
        show = self.make_show(hour=13)
        self.sub.wait_for(show["id"], 1)
        _, _, cancelled = self.admin(
            f"/v1/admin/shows/{show['id']}/cancel", {"reason": "Rain"},
            expect=200)
        self.assertEqual(cancelled["version"], show["version"] + 1)
        scheduled, gone = self.sub.wait_for(show["id"], 2)
        self.assertEqual(scheduled["body"]["type"], "show.scheduled")
        self.assertEqual(gone["body"], {"type": "show.cancelled",
                                        "show_id": show["id"],
                                        "version": show["version"] + 1})

        # Cancelling again changes nothing but says so again: a subscriber
        # that missed the first event can be told by repeating the cancel.
        self.admin(f"/v1/admin/shows/{show['id']}/cancel", expect=200)
        again = self.sub.wait_for(show["id"], 3)[2]
        self.assertEqual(again["body"], gone["body"])

    def test_server_errors_are_retried_until_a_2xx(self):
        with self.sub.cond:
            self.sub.script = [500, 503]
        show = self.make_show(hour=16)
        tries = self.sub.wait_for(show["id"], 3)
        self.assertEqual([t["status"] for t in tries], [500, 503, 202])
        self.assertEqual({json.dumps(t["body"]) for t in tries},
                         {json.dumps({"type": "show.scheduled",
                                      "show_id": show["id"], "version": 1})})
        # Backoff of 100 then 200 ms between the tries.
        self.assertGreaterEqual(tries[1]["at"] - tries[0]["at"], 0.09)
        self.assertGreaterEqual(tries[2]["at"] - tries[1]["at"], 0.19)
        time.sleep(QUIET_S)
        self.assertEqual(len(self.sub.for_show(show["id"])), 3)

    def test_client_errors_are_not_retried(self):
        with self.sub.cond:
            self.sub.script = [422]
        show = self.make_show(hour=19)
        self.sub.wait_for(show["id"], 1)
        self.wait_log(f"show_event_refused type=show.scheduled "
                      f"show={show['id']}")
        time.sleep(QUIET_S)
        self.assertEqual(len(self.sub.for_show(show["id"])), 1)

    def test_no_orphan_seats_round_trips(self):
        for given, stored in ((True, True), (False, False), (None, False)):
            extra = {} if given is None else {"no_orphan_seats": given}
            show = self.make_show(days=4, **extra)
            self.assertIs(show["no_orphan_seats"], stored)
            _, _, back = self.call("GET", f"/v1/shows/{show['id']}",
                                   expect=200)
            self.assertIs(back["no_orphan_seats"], stored)
            self.assertEqual(back, show)
            _, _, cancelled = self.admin(
                f"/v1/admin/shows/{show['id']}/cancel", expect=200)
            self.assertIs(cancelled["no_orphan_seats"], stored)

    def test_no_orphan_seats_must_be_a_boolean(self):
        screen, movie = self.world()
        for bad in ("yes", 1, 0, None, [], {}):
            status, got, data = self.admin(
                "/v1/admin/shows",
                self.show_body(screen, movie, days=5, no_orphan_seats=bad),
                expect=422)
            self.assertEqual(got["content-type"], "application/problem+json")
            self.assertEqual(data["type"], "/problems/validation-failed")
            self.assertEqual(
                [(e["field"], e["code"]) for e in data["errors"]],
                [("no_orphan_seats", "wrong-type")], bad)


class SubscriberDownTest(EventsCase):
    """Nothing listens at the subscriber's address: every try is refused."""

    @classmethod
    def notify_urls(cls):
        return f"http://127.0.0.1:{free_port()}"

    def test_write_answers_at_once_and_failure_is_logged(self):
        started = time.monotonic()
        show = self.make_show()
        self.assertLess(time.monotonic() - started, 5.0)
        log = self.wait_log(f"show_event_undelivered type=show.scheduled "
                            f"show={show['id']} version=1")
        line = next(line for line in log.splitlines()
                    if f"show={show['id']} version=1" in line
                    and "show_event_undelivered" in line)
        self.assertIn("tries=3", line)
        self.assertIn("error=ERR_IO", line)
        self.assertIn("client_failed", log)
        _, _, back = self.call("GET", f"/v1/shows/{show['id']}", expect=200)
        self.assertEqual(back, show)


class SubscriberHangsTest(EventsCase):
    """The subscriber accepts connections and never answers: each POST
    waits out its 2 s timeout, yet admin writes answer at once."""

    @classmethod
    def prepare(cls):
        cls.hung = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        cls.hung.bind(("127.0.0.1", 0))
        cls.hung.listen(64)

    @classmethod
    def notify_urls(cls):
        return f"http://127.0.0.1:{cls.hung.getsockname()[1]}"

    @classmethod
    def tearDownClass(cls):
        # Closing the listener resets the waiting connections, so the
        # notifier's drain at shutdown is quick.
        cls.hung.close()
        super().tearDownClass()

    def test_writes_do_not_wait_for_the_subscriber(self):
        screen, movie = self.world()
        for hour in (9, 12, 15, 18):
            started = time.monotonic()
            self.admin("/v1/admin/shows",
                       self.show_body(screen, movie, days=2, hour=hour),
                       expect=201)
            self.assertLess(time.monotonic() - started, 1.5)


class NotifyUrlConfigTest(unittest.TestCase):

    def test_bad_url_stops_start_up_naming_it(self):
        for urls, bad in (("ftp://127.0.0.1:9", "ftp://127.0.0.1:9"),
                          ("http://127.0.0.1:9, http://x:99999",
                           "http://x:99999"),
                          ("http://127.0.0.1:9,,http://127.0.0.1:10", "")):
            with tempfile.TemporaryDirectory(prefix="marquee-ev-") as tmp:
                out = subprocess.run(
                    [marquee_bin(), "catalog", f"--http.port={free_port()}",
                     f"--store.path={os.path.join(tmp, 'c.db')}",
                     f"--catalog.notify_urls={urls}"],
                    capture_output=True, text=True, timeout=20, cwd=tmp)
            self.assertEqual(out.returncode, 1, out.stderr)
            self.assertIn("key=catalog.notify_urls", out.stderr)
            self.assertIn(f'url="{bad}"', out.stderr)


if __name__ == "__main__":
    unittest.main()
