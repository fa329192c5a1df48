"""The services' side of the gateway's trust, on a real booking process.

With http.gateway_secret set, a service believes X-Customer-Id only beside
the same secret in X-Gateway-Secret: without it, or with another value, it
answers 403 untrusted-customer and does nothing.  Without a secret the
header is believed as before.  A secret too short stops the start.
"""

import json
import unittest

from support import Service, run_refused_start

SECRET = "a-secret-shared-by-gateway-and-services"


class TrustTest(unittest.TestCase):

    def bookings(self, svc, headers):
        status, hdrs, body = svc.request("GET", "/v1/bookings",
                                         headers=headers)
        return status, hdrs, json.loads(body) if body else None

    def test_secret_configured(self):
        with Service("booking",
                     flags={"http.gateway_secret": SECRET}) as svc:
            status, hdrs, doc = self.bookings(svc, {"X-Customer-Id": "c-1"})
            self.assertEqual(status, 403)
            self.assertEqual(hdrs["content-type"], "application/problem+json")
            self.assertEqual(doc["type"], "/problems/untrusted-customer")

            for wrong in (SECRET[:-1], SECRET + "x", SECRET.upper(), ""):
                status, _, doc = self.bookings(
                    svc, {"X-Customer-Id": "c-1", "X-Gateway-Secret": wrong})
                self.assertEqual(status, 403, wrong)
                self.assertEqual(doc["type"], "/problems/untrusted-customer")

            status, _, doc = self.bookings(
                svc, {"X-Customer-Id": "c-1", "X-Gateway-Secret": SECRET})
            self.assertEqual(status, 200)

            # Vouched for, a malformed customer is still refused.
            status, _, doc = self.bookings(
                svc, {"X-Customer-Id": "c 1", "X-Gateway-Secret": SECRET})
            self.assertEqual(status, 400)
            self.assertEqual(doc["type"], "/problems/invalid-customer")

    def test_no_secret_keeps_the_header_trusted(self):
        with Service("booking") as svc:
            status, _, _ = self.bookings(svc, {"X-Customer-Id": "c-1"})
            self.assertEqual(status, 200)

    def test_short_secret_stops_the_start(self):
        proc = run_refused_start("booking", {"http.gateway_secret": "short"})
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"bad_config key=http.gateway_secret", proc.stderr)


if __name__ == "__main__":
    unittest.main()
