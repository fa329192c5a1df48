"""Deadlines passed downstream: a service does not start work its caller
has given up on.

The gateway sends `X-Deadline-Ms` (the time left of its budget) with every
request it forwards. Every service answers `504 deadline-exceeded` at
arrival when that budget is already spent, and booking checks it again
when a hold has waited for its show to be read from the catalog: a hold
whose caller is gone must not take seats. Real catalog and booking
processes; the catalog is slowed with its fault switch (`http.faults`).
"""

import json
import unittest
import uuid

from support import ApiSchema, Service
from test_booking import DEMO, TOKEN, seat_ids

JSON_TYPE = {"Content-Type": "application/json"}
CATALOG_DELAY_MS = 800
DEADLINE_MS = 200


class DeadlineTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO,
            "catalog.admin_token": TOKEN, "http.faults": "true"})
        try:
            cls.booking = Service("booking", flags={
                "booking.catalog_url": cls.catalog.url})
        except BaseException:
            cls.catalog.close()
            raise
        cls.api = ApiSchema.for_file("booking.yaml")

    @classmethod
    def tearDownClass(cls):
        for svc in (cls.booking, cls.catalog):
            try:
                svc.stop()
            finally:
                svc.close()

    def slow_catalog(self, delay_ms):
        body = {"status": 0, "rate": 1.0, "delay_ms": delay_ms}
        status, _, answer = self.catalog.request(
            "PUT", "/internal/v1/faults", body=json.dumps(body).encode(),
            headers=JSON_TYPE)
        self.assertEqual(status, 200, answer)

    def hold(self, show, seats, idem, deadline=None):
        headers = {"X-Customer-Id": "cust-deadline", "Idempotency-Key": idem,
                   **JSON_TYPE}
        if deadline is not None:
            headers["X-Deadline-Ms"] = str(deadline)
        status, headers, body = self.booking.request(
            "POST", f"/v1/shows/{show}/holds",
            body=json.dumps({"seats": seats}).encode(), headers=headers)
        self.api.check("POST", "/v1/shows/{show_id}/holds", status, headers,
                       body)
        return status, json.loads(body)

    def test_hold_that_waited_past_its_deadline_takes_no_seat(self):
        show = 41  # booking has not met it: the hold waits for the catalog
        idem = "k-" + uuid.uuid4().hex
        self.slow_catalog(CATALOG_DELAY_MS)
        try:
            status, body = self.hold(show, ["C7", "C8"], idem, DEADLINE_MS)
        finally:
            self.slow_catalog(0)
        self.assertEqual((status, body["type"]),
                         (504, "/problems/deadline-exceeded"), body)

        # The show arrived meanwhile; the seats are still free.
        status, _, m = self.booking.json("GET", f"/v1/shows/{show}/seats")
        self.assertEqual(status, 200)
        self.assertEqual(m["counts"]["held"], 0)

        # The 504 was not stored under the key: the same key, with time to
        # spare, takes the seats.
        status, body = self.hold(show, ["C7", "C8"], idem, 5000)
        self.assertEqual(status, 201, body)
        self.assertNotIn("idempotent-replayed",
                         {k.lower() for k in body})

    def test_spent_budget_is_refused_at_arrival(self):
        _, _, m = self.booking.json("GET", "/v1/shows/3/seats")
        seats = seat_ids(m, 2, 1)
        status, body = self.hold(3, seats, "k-" + uuid.uuid4().hex, 0)
        self.assertEqual((status, body["type"]),
                         (504, "/problems/deadline-exceeded"))
        _, _, after = self.booking.json("GET", "/v1/shows/3/seats")
        self.assertEqual(after["counts"]["held"], m["counts"]["held"])

    def test_malformed_deadline_is_400(self):
        for bad in ("-1", "soon", "1.5", "999999999"):
            status, _, body = self.catalog.request(
                "GET", "/v1/shows/1", headers={"X-Deadline-Ms": bad})
            self.assertEqual(status, 400, bad)
            self.assertEqual(json.loads(body)["type"],
                             "/problems/bad-deadline")

    def test_health_ignores_deadlines(self):
        status, _, _ = self.catalog.request(
            "GET", "/readyz", headers={"X-Deadline-Ms": "0"})
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
