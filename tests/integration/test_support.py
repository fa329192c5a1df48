"""Tests of support.py's ApiSchema against a small inline description, so
that a response check which passes means something.  Needs no marquee."""

import socket
import unittest

from support import ApiSchema, free_port

JSON = {"content-type": "application/json"}
PROBLEM = {"content-type": "application/problem+json"}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "support test", "version": "1"},
    "paths": {
        "/v1/shows/{id}": {
            "get": {
                "responses": {
                    200: {
                        "description": "A show.",
                        "headers": {
                            "ETag": {"$ref": "#/components/headers/ETag"},
                        },
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Show"},
                        }},
                    },
                    "404": {"$ref": "#/components/responses/Problem"},
                },
            },
            "delete": {
                "responses": {
                    "204": {"description": "Gone."},
                    "4XX": {"$ref": "#/components/responses/Problem"},
                    "default": {"$ref": "#/components/responses/Problem"},
                },
            },
        },
        "/metrics": {
            "get": {"responses": {"200": {
                "description": "Prometheus text.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }}},
        },
    },
    "components": {
        "headers": {
            "ETag": {"required": True, "schema": {"type": "string"}},
        },
        "responses": {
            "Problem": {
                "description": "An error.",
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                }},
            },
        },
        "schemas": {
            "Show": {
                "type": "object",
                "required": ["id", "starts_at", "seats"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "starts_at": {"type": "string", "format": "date-time"},
                    "note": {"type": ["string", "null"]},
                    "seats": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Seat"},
                    },
                },
            },
            "Seat": {
                "type": "object",
                "required": ["row", "number"],
                "properties": {
                    "row": {"type": "string", "pattern": "^[A-Z]$"},
                    "number": {"type": "integer"},
                },
            },
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                },
            },
        },
    },
}

SHOW = (b'{"id": 1, "starts_at": "2025-03-01T19:30:00Z", "note": null,'
        b' "seats": [{"row": "A", "number": 1}]}')
SHOW_HEADERS = dict(JSON, etag='"v1"')
NOT_FOUND = b'{"type": "about:blank", "title": "Not Found", "status": 404}'


class ApiSchemaTest(unittest.TestCase):
    def setUp(self):
        self.api = ApiSchema(SPEC)

    def assert_rejects(self, fragment, *args):
        with self.assertRaises(AssertionError) as caught:
            self.api.check(*args)
        self.assertIn(fragment, str(caught.exception))

    def test_valid_body_passes_and_is_returned(self):
        data = self.api.check("GET", "/v1/shows/{id}", 200, SHOW_HEADERS,
                              SHOW)
        self.assertEqual(data["seats"][0]["row"], "A")

    def test_concrete_path_finds_its_template(self):
        self.api.check("get", "/v1/shows/42?x=1", 200, SHOW_HEADERS, SHOW)

    def test_wrong_type_deep_in_a_ref_names_the_place(self):
        body = SHOW.replace(b'"number": 1', b'"number": "1"')
        self.assert_rejects("at $.seats[0].number: '1' is not of type",
                            "GET", "/v1/shows/{id}", 200, SHOW_HEADERS, body)

    def test_missing_required_property(self):
        self.assert_rejects("'starts_at' is a required property", "GET",
                            "/v1/shows/{id}", 200, SHOW_HEADERS,
                            b'{"id": 1, "seats": []}')

    def test_unexpected_property(self):
        body = SHOW.replace(b'"id": 1', b'"id": 1, "extra": true')
        self.assert_rejects("'extra' was unexpected", "GET",
                            "/v1/shows/{id}", 200, SHOW_HEADERS, body)

    def test_bad_date_time_is_caught(self):
        body = SHOW.replace(b"2025-03-01T19:30:00Z", b"2025-03-01 19:30")
        self.assert_rejects("is not a 'date-time'", "GET", "/v1/shows/{id}",
                            200, SHOW_HEADERS, body)

    def test_undocumented_status(self):
        self.assert_rejects("status 500 is not documented (documented: 200, "
                            "404)", "GET", "/v1/shows/{id}", 500, PROBLEM,
                            NOT_FOUND)

    def test_undocumented_path_and_method(self):
        self.assert_rejects("is not in the API description", "GET",
                            "/v1/films", 200, JSON, b"{}")
        self.assert_rejects("PUT /v1/shows/{id} is not in the API", "PUT",
                            "/v1/shows/{id}", 200, JSON, b"{}")

    def test_problem_through_a_response_ref(self):
        data = self.api.check("GET", "/v1/shows/{id}", 404,
                              {"content-type": "application/problem+json; "
                               "charset=utf-8"}, NOT_FOUND)
        self.assertEqual(data["status"], 404)
        self.assert_rejects("'status' is a required property", "GET",
                            "/v1/shows/{id}", 404, PROBLEM,
                            b'{"type": "about:blank", "title": "x"}')

    def test_wrong_content_type(self):
        self.assert_rejects("content type 'application/json' is not "
                            "documented", "GET", "/v1/shows/{id}", 404, JSON,
                            NOT_FOUND)

    def test_body_that_is_not_json(self):
        self.assert_rejects("body is not JSON", "GET", "/v1/shows/{id}", 200,
                            SHOW_HEADERS, b"<html>")

    def test_required_header(self):
        self.assert_rejects("required header ETag is missing", "GET",
                            "/v1/shows/{id}", 200, JSON, SHOW)

    def test_status_range_and_default(self):
        self.api.check("DELETE", "/v1/shows/{id}", 409, PROBLEM,
                       b'{"type": "about:blank", "title": "x", '
                       b'"status": 409}')
        self.api.check("DELETE", "/v1/shows/{id}", 503, PROBLEM,
                       b'{"type": "about:blank", "title": "x", '
                       b'"status": 503}')

    def test_no_content_response(self):
        self.assertIsNone(self.api.check("DELETE", "/v1/shows/{id}", 204, {},
                                         b""))
        self.assert_rejects("documented without a body", "DELETE",
                            "/v1/shows/{id}", 204, JSON, b"{}")

    def test_non_json_content_is_only_checked_for_its_type(self):
        self.assertIsNone(self.api.check("GET", "/metrics", 200,
                                         {"content-type": "text/plain"},
                                         b"up 1\n"))

    def test_dangling_ref(self):
        spec = {"openapi": "3.1.0", "paths": {"/x": {"get": {"responses": {
            "200": {"$ref": "#/components/responses/Nope"}}}}}}
        with self.assertRaises(AssertionError) as caught:
            ApiSchema(spec).check("GET", "/x", 200, JSON, b"{}")
        self.assertIn("points nowhere", str(caught.exception))


class FreePortTest(unittest.TestCase):
    def test_port_can_be_bound(self):
        port = free_port()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


if __name__ == "__main__":
    unittest.main()
