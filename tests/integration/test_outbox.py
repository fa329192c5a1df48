"""Show events from the catalog's transactional outbox, through the message
queue, to booking.

Real processes: a catalog (catalog.events=outbox) and a booking
(booking.events=queue) sharing one queue file in a temporary directory.
The catalog writes each show event in the transaction of the change,
its relay publishes it to the queue, and booking's consumer re-reads the
show and acks.  The tests prove the path (booking knows a show before
anyone asked it for one), that nothing is lost while booking is down or
after the catalog is killed, and that a re-sent event is delivered once.
"""

import datetime
import os
import re
import shutil
import sqlite3
import tempfile
import time
import unittest

from support import Service

TOKEN = "outbox-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
# Events take milliseconds; the slack is for a loaded machine and ASan.
EVENT_WAIT_S = 15.0
# How long to watch for a second delivery that must not come.
QUIET_S = 1.5

LAYOUT = {
    "categories": [{"code": "classic", "name": "Classic"}],
    "rows": [{"label": "A", "category": "classic",
              "seats": [1, 2, 3, None, 4, 5]}],
}


def future(days, hour):
    d = datetime.datetime.now(datetime.timezone.utc).date()
    t = datetime.datetime.combine(d + datetime.timedelta(days=days),
                                  datetime.time(hour, 0),
                                  tzinfo=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_until(what, check, timeout=EVENT_WAIT_S, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


class OutboxTest(unittest.TestCase):
    """One catalog and one booking per class, sharing a queue file."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="marquee-outbox-")
        cls.queue = os.path.join(cls.tmp, "queue.db")
        cls.catalog = Service("catalog", flags={
            "catalog.admin_token": TOKEN, "mq.path": cls.queue})
        try:
            cls.booking = Service("booking", flags={
                "booking.catalog_url": cls.catalog.url,
                "mq.path": cls.queue})
        except BaseException:
            cls.catalog.close()
            raise
        cls.screen, cls.movie = cls.world()
        cls.slot = 0

    @classmethod
    def tearDownClass(cls):
        try:
            for svc in (cls.booking, cls.catalog):
                code = svc.stop()
                assert code == 0, f"{svc.role} exited with {code}"
        finally:
            cls.booking.close()
            cls.catalog.close()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def admin(cls, path, body=None, expect=201):
        status, _, data = cls.catalog.json("POST", path, body or {}, ADMIN)
        assert status == expect, f"POST {path}: {status} {data}"
        return data

    @classmethod
    def world(cls):
        city = cls.admin("/v1/admin/cities", {
            "name": "Outboxville", "slug": "outboxville",
            "utc_offset_minutes": 330, "currency": "INR"})
        cinema = cls.admin("/v1/admin/cinemas", {
            "city_id": city["id"], "name": "Relay Talkies",
            "address": "1 Queue Road"})
        screen = cls.admin(f"/v1/admin/cinemas/{cinema['id']}/screens",
                           {"name": "Screen 1", "layout": LAYOUT})
        movie = cls.admin("/v1/admin/movies", {
            "title": "The Outbox", "language": "Tamil", "genres": ["drama"],
            "duration_minutes": 90, "certificate": "U",
            "release_date": "2026-11-01"})
        return screen, movie

    def new_show(self):
        """A show in a slot of its own (no overlap with the others)."""
        type(self).slot += 1
        days, hour = 3 + self.slot // 10, 8 + (self.slot % 10) * 1.5
        start = future(days, int(hour))
        if hour % 1:
            start = start.replace(":00:00Z", ":30:00Z")
        return self.admin("/v1/admin/shows", {
            "movie_id": self.movie["id"], "screen_id": self.screen["id"],
            "starts_at": start, "prices": {"classic": 20000}})

    def cancel(self, show):
        return self.admin(f"/v1/admin/shows/{show['id']}/cancel",
                          {"reason": "Projector fire"}, expect=200)

    # ------------------------------------------------------------ helpers

    def handled(self, event_id):
        """Booking's log lines saying it handled event_id from the queue."""
        return [line for line in self.booking.log().splitlines()
                if "show_event_handled source=queue" in line
                and f" id={event_id} " in line]

    def wait_handled(self, event_id):
        return wait_until(f"booking handles {event_id}",
                          lambda: self.handled(event_id))

    def outbox(self, sql, args=()):
        con = sqlite3.connect(self.catalog.db_path, timeout=10)
        try:
            with con:
                return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def unsent(self):
        return self.outbox("SELECT event_id FROM outbox "
                           "WHERE sent_at IS NULL ORDER BY id")

    def seats(self, show):
        status, _, m = self.booking.json("GET", f"/v1/shows/{show['id']}/seats")
        self.assertEqual(status, 200, m)
        return m

    def hold(self, show, seat="A1"):
        return self.booking.json(
            "POST", f"/v1/shows/{show['id']}/holds", {"seats": [seat]},
            {"X-Customer-Id": "c-outbox"})

    def metric(self, svc, name, labels):
        _, _, raw = svc.request("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith(name + "{") and all(
                    f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    # ------------------------------------------------------------ tests

    def test_scheduled_show_arrives_by_queue_and_cancel_closes_it(self):
        show = self.new_show()
        self.assertEqual(show["version"], 1)
        (line,) = self.wait_handled(f"show.{show['id']}.v1")
        self.assertIn("topic=show.scheduled", line)
        self.assertIn("outcome=refreshed", line)
        # Booking installed the show from the event, before anybody asked
        # it for the show: the seat map is the first request about it.
        log = self.booking.log()
        self.assertLess(log.index(f"show_installed show={show['id']} "),
                        log.index(f"id=show.{show['id']}.v1 "))
        self.assertEqual(self.seats(show)["status"], "open")
        self.assertEqual(self.unsent(), [])

        # A write that fails leaves no event behind.
        rows = self.outbox("SELECT count(*) FROM outbox")
        self.admin("/v1/admin/shows", {
            "movie_id": self.movie["id"], "screen_id": self.screen["id"],
            "starts_at": show["starts_at"], "prices": {"classic": 1}},
            expect=409)
        self.assertEqual(self.outbox("SELECT count(*) FROM outbox"), rows)

        self.assertEqual(self.cancel(show)["version"], 2)
        (line,) = self.wait_handled(f"show.{show['id']}.v2")
        self.assertIn("topic=show.cancelled", line)
        # Acked only once handled: the hold is refused at once.
        status, _, body = self.hold(show)
        self.assertEqual((status, body["type"]),
                         (409, "/problems/show-closed"), body)
        self.assertEqual(self.seats(show)["status"], "cancelled")

        # The consumer's counters and the queue's depth gauges are live.
        handled = self.metric(self.booking,
                              "marquee_booking_show_events_total",
                              {"outcome": "handled"})
        self.assertGreaterEqual(handled, 2)
        ready = wait_until("depth gauge", lambda: self.metric(
            self.booking, "marquee_mq_messages",
            {"queue": "booking.shows", "state": "ready"}) is not None)
        self.assertTrue(ready)

    def test_booking_down_receives_every_event_on_restart(self):
        self.booking.stop()
        try:
            kept, dropped = self.new_show(), self.new_show()
            self.cancel(dropped)
            # The catalog has relayed them: they wait in the queue.
            wait_until("outbox relayed", lambda: self.unsent() == [])
        finally:
            self.booking.start()
        for event in (f"show.{kept['id']}.v1", f"show.{dropped['id']}.v1",
                      f"show.{dropped['id']}.v2"):
            self.wait_handled(event)
        self.assertEqual(self.seats(kept)["status"], "open")
        self.assertEqual(self.seats(dropped)["status"], "cancelled")
        self.assertEqual(self.hold(dropped)[0], 409)

    def test_failed_refresh_is_nacked_and_retried(self):
        self.booking.stop()
        try:
            show = self.new_show()
            event = f"show.{show['id']}.v1"
            wait_until("outbox relayed", lambda: self.unsent() == [])
            # Booking gets the event while the catalog cannot be read.
            self.catalog.stop()
        finally:
            self.booking.start()
        try:
            wait_until("nack", lambda: f"show_event_failed source=queue "
                       f"id={event} show={show['id']} attempt=1 dead=false"
                       in self.booking.log())
            self.assertEqual(self.handled(event), [])
        finally:
            self.catalog.start()
        (line,) = self.wait_handled(event)
        self.assertRegex(line, r"attempt=[2-9]")
        self.assertGreaterEqual(self.metric(
            self.booking, "marquee_booking_show_events_total",
            {"outcome": "retried"}), 1)
        self.assertEqual(self.seats(show)["status"], "open")

    def test_committed_events_survive_a_catalog_kill(self):
        # Another process holds the queue's write lock, so the relay cannot
        # publish: the admin writes commit, their events stay unsent.
        lock = sqlite3.connect(self.queue, timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            shows = [self.new_show(), self.new_show()]
            self.cancel(shows[1])
            self.catalog.kill()
            lock.execute("ROLLBACK")
        finally:
            lock.close()
        ids = [f"show.{shows[0]['id']}.v1", f"show.{shows[1]['id']}.v1",
               f"show.{shows[1]['id']}.v2"]
        try:
            self.assertEqual([r[0] for r in self.unsent()], ids)
        finally:
            self.catalog.start()
        wait_until("outbox drained", lambda: self.unsent() == [])
        for event in ids:
            self.wait_handled(event)
        self.assertEqual(self.seats(shows[0])["status"], "open")
        self.assertEqual(self.seats(shows[1])["status"], "cancelled")

    def test_a_resent_event_is_delivered_once(self):
        show = self.new_show()
        event = f"show.{show['id']}.v1"
        self.wait_handled(event)
        self.assertEqual(self.unsent(), [])

        # As if the relay died between the publish and marking the row.
        self.catalog.stop()
        self.outbox("UPDATE outbox SET sent_at = NULL WHERE event_id = ?",
                    (event,))
        self.assertEqual(self.unsent(), [(event,)])
        self.catalog.start()
        wait_until("re-sent", lambda: self.unsent() == [])
        # The queue took the second publish as a duplicate of the first.
        self.assertRegex(self.catalog.log(),
                         re.escape(f"outbox_published id={event} ") +
                         r"topic=show\.scheduled queues=0")
        time.sleep(QUIET_S)
        self.assertEqual(len(self.handled(event)), 1)


if __name__ == "__main__":
    unittest.main()
