"""The gateway's accounts through a real gateway process, across SIGKILL.

What the gateway acknowledged is in its accounts database before the
answer leaves (the store commits first): a sign-up, a sign-in's refresh
token, a rotation and an API key all survive kill -9 of the gateway, and
a rotated refresh token stays used.  Access tokens are checked by the
shared gateway.token_secret alone, so they outlive the process when it is
set and die with it when it is not.

The one route of the routes file leads to a pool with nobody listening:
a request the gateway accepts is answered 502 or 503 by the proxy, one it
refuses is 401 before any proxying, which is what these tests look at.
Passwords are hashed at libsodium's interactive level (the default), as
in production.
"""

import unittest

from support import Service, free_port
from test_gateway import Gateway

TOKEN_SECRET = "a token secret of at least thirty-two bytes!"
ADMIN = {"Authorization": "Bearer accounts-test-admin-token"}


def routes():
    return {"pools": {"catalog": {"instances": [f"127.0.0.1:{free_port()}"]}},
            "routes": [{"prefix": "/v1/cities", "pool": "catalog"}]}


class AccountsTest(unittest.TestCase):

    def gateway(self, **flags):
        merged = {"gateway.admin_token": "accounts-test-admin-token",
                  "gateway.password_opslimit": "2",
                  "gateway.password_memlimit_kib": "65536"}
        merged.update(flags)
        gw = Gateway(routes(), flags=merged)
        self.addCleanup(gw.close)
        return gw

    def sign_in(self, gw, password="correct horse battery"):
        status, _, doc = gw.json("POST", "/v1/sessions", {
            "email": "ann@example.com", "password": password})
        self.assertEqual(status, 201, doc)
        return doc

    def accepted(self, gw, headers):
        """Whether the gateway let the request through to the proxy."""
        status, _, body = gw.request("GET", "/v1/cities", headers=headers)
        self.assertIn(status, (401, 502, 503), body)
        return status != 401

    def test_acknowledged_state_survives_sigkill(self):
        gw = self.gateway(**{"gateway.token_secret": TOKEN_SECRET})
        status, _, doc = gw.json("POST", "/v1/accounts", {
            "email": "ann@example.com", "password": "correct horse battery",
            "name": "Ann"})
        self.assertEqual(status, 201, doc)
        first = self.sign_in(gw)
        status, _, second = gw.json("POST", "/v1/sessions/refresh", {
            "refresh_token": first["refresh_token"]})
        self.assertEqual(status, 200, second)
        status, _, key = gw.json("POST", "/admin/api-keys", {
            "name": "acme", "scopes": ["catalog:read"]}, headers=ADMIN)
        self.assertEqual(status, 201, key)

        gw.kill()
        gw.start()

        # The account: signing in still works, a wrong password still not.
        self.sign_in(gw)
        status, _, doc = gw.json("POST", "/v1/sessions", {
            "email": "ann@example.com", "password": "wrong horse battery"})
        self.assertEqual(status, 401, doc)
        # The rotation: the first token is used, so presenting it again
        # revokes the family, and the second then fails too.
        status, _, doc = gw.json("POST", "/v1/sessions/refresh", {
            "refresh_token": first["refresh_token"]})
        self.assertEqual(status, 401, doc)
        self.assertIn("already used", doc["detail"])
        status, _, doc = gw.json("POST", "/v1/sessions/refresh", {
            "refresh_token": second["refresh_token"]})
        self.assertEqual(status, 401, doc)
        # The API key and the access token, with the same secret.
        self.assertTrue(self.accepted(gw, {"X-Api-Key": key["key"]}))
        self.assertTrue(self.accepted(gw, {
            "Authorization": "Bearer " + second["access_token"]}))
        tampered = second["access_token"][:-2] + (
            "AA" if second["access_token"][-2:] != "AA" else "BB")
        self.assertFalse(self.accepted(gw, {
            "Authorization": "Bearer " + tampered}))
        gw.stop()

    def test_random_secret_tokens_die_with_the_process(self):
        gw = self.gateway()
        status, _, doc = gw.json("POST", "/v1/accounts", {
            "email": "ann@example.com", "password": "correct horse battery",
            "name": "Ann"})
        self.assertEqual(status, 201, doc)
        session = self.sign_in(gw)
        bearer = {"Authorization": "Bearer " + session["access_token"]}
        self.assertTrue(self.accepted(gw, bearer))
        self.assertIn("token_secret_random", gw.log())

        gw.stop()
        gw.start()
        status, hdrs, doc = gw.json("GET", "/v1/cities", headers=bearer)
        self.assertEqual(status, 401, doc)
        self.assertEqual(doc["type"], "/problems/invalid-token")
        self.assertIn("invalid_token", hdrs["www-authenticate"])
        # The refresh token is in the database: it still works.
        status, _, doc = gw.json("POST", "/v1/sessions/refresh", {
            "refresh_token": session["refresh_token"]})
        self.assertEqual(status, 200, doc)
        gw.stop()


if __name__ == "__main__":
    unittest.main()
