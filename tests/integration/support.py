"""Shared library of Marquee's integration tests.

Service starts one role of the marquee binary ($MARQUEE_BIN, normally the
ASan build) on a free loopback port with its own temporary directory, waits
until it is ready, talks HTTP to it, and stops it with SIGTERM.  Stopping
fails the test when the process did not exit in time or its log holds a
sanitizer report, so every integration test also proves that the ASan build
ran clean.

ApiSchema checks a response against an API description, by default
docs/api/openapi.yaml (ApiSchema.for_file("booking.yaml") gives another
file of docs/api): the status must be documented for the operation, the
content type too, and the body must match the documented JSON Schema.

    from support import ApiSchema, Service, repo_path

    class CatalogTest(unittest.TestCase):
        def test_show(self):
            with Service("catalog", "--catalog.demo=true",
                         flags={"catalog.demo_file": repo_path(
                             "data", "demo", "catalog.json")}) as svc:
                status, headers, body = svc.request("GET", "/v1/shows/1")
                ApiSchema.default().check("GET", "/v1/shows/{id}", status,
                                          headers, body)
"""

import atexit
import copy
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
API_DIR = os.path.join(ROOT, "docs", "api")
SPEC_PATH = os.path.join(API_DIR, "openapi.yaml")

HOST = "127.0.0.1"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
READY_POLL_S = 0.05
# A port picked by free_port() can be taken before the service binds it.
START_ATTEMPTS_MAX = 3
LOG_TAIL_LINES = 40

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
# Used where the environment does not set them already (tests/run.py does).
LSAN_SUPPRESSIONS = os.path.join(ROOT, "tests", "lsan.supp")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
if os.path.isfile(LSAN_SUPPRESSIONS):
    SANITIZER_ENV["LSAN_OPTIONS"] = (f"suppressions={LSAN_SUPPRESSIONS}"
                                     ":print_suppressions=0")

# Services not stopped by their test are killed when the interpreter exits,
# so that no server outlives the run.
_live = set()


@atexit.register
def _kill_leftovers():
    for svc in list(_live):
        svc.kill()


def free_port():
    """A TCP port on the loopback address that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def repo_path(*parts):
    """An absolute path inside the repository.  Services run in their temp
    directory, so a file of the repository (demo data, say) is passed to
    them by absolute path."""
    return os.path.join(ROOT, *parts)


def marquee_bin():
    """The binary under test: $MARQUEE_BIN, else the ASan build."""
    path = os.environ.get("MARQUEE_BIN") or os.path.join(
        ROOT, "build", "asan", "marquee")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"marquee binary {path} is not built "
                             "(make asan, or set MARQUEE_BIN)")
    return path


# Roles with no database of their own take no --store.path.
ROLES_WITHOUT_STORE = {"gateway"}


class Service:
    """One running marquee role, in its own temporary directory.

    Service(role, *args, flags=None, env=None, ready_timeout=20, start=True)

    args are extra command-line arguments, passed as they are; flags is a
    dict of config keys, passed as --key=value.  The service gets
    --http.port, --store.path=<tmpdir>/<role>.db (for roles with a
    database) and --log.level=debug before them, so a test can override
    any of them.

    The temporary directory is also the process's working directory, so a
    relative path among the service's defaults points there, not into the
    repository: pass repo_path(...) for a file of the repository.  close()
    removes the directory unless the test failed or MARQUEE_KEEP_TMP is set.

    Used as a context manager, leaving the block stops the service, fails
    unless it exited 0 with a clean log, and closes it.  Without one, call
    stop() (which checks the log) and then close(), e.g. from tearDown.
    stop() followed by start() restarts the service on the same port and
    database, for tests of what survives a restart.
    """

    def __init__(self, role, *args, flags=None, env=None,
                 ready_timeout=READY_TIMEOUT_S, start=True):
        self.role = role
        self.args = list(args) + [f"--{k}={v}"
                                  for k, v in (flags or {}).items()]
        self.env = dict(os.environ)
        for key, value in SANITIZER_ENV.items():
            self.env.setdefault(key, value)
        self.env.update(env or {})
        self.ready_timeout = ready_timeout
        self.binary = marquee_bin()
        self.tmpdir = tempfile.mkdtemp(prefix=f"marquee-{role}-")
        self.log_path = os.path.join(self.tmpdir, f"{role}.log")
        self.db_path = os.path.join(self.tmpdir, f"{role}.db")
        self.port = None
        self.proc = None
        self.exit_code = None
        self._failed = False
        if start:
            self.start()

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def argv(self):
        store = ([] if self.role in ROLES_WITHOUT_STORE
                 else [f"--store.path={self.db_path}"])
        return [self.binary, self.role, f"--http.port={self.port}", *store,
                "--log.level=debug", *self.args]

    # ------------------------------------------------------------ lifecycle

    def start(self):
        """Starts the process and waits until GET /readyz answers 200."""
        assert self.proc is None, "service already started"
        keep_port = self.port is not None
        for attempt in range(1, START_ATTEMPTS_MAX + 1):
            if not keep_port:
                self.port = free_port()
            self._spawn()
            outcome = self._wait_ready()
            if outcome is None:
                return self
            if (attempt < START_ATTEMPTS_MAX and not keep_port
                    and "address already in use" in self.log().lower()):
                continue
            self._fail(f"{self.role} did not become ready: {outcome}")
        return self

    def _spawn(self):
        self.exit_code = None
        with open(self.log_path, "ab") as log:
            log.write(f"---- start: {' '.join(self.argv())}\n".encode())
            log.flush()
            # Same process group as the test, so that tests/run.py's kill of
            # a hung suite takes the service down too.
            self.proc = subprocess.Popen(
                self.argv(), cwd=self.tmpdir, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _live.add(self)

    def _wait_ready(self):
        """None once ready; else why not (and the process is gone)."""
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self._reap(code)
                return f"exited early with {describe_exit(code)}"
            try:
                status, _, _ = self.request("GET", "/readyz", timeout=1.0)
                if status == 200:
                    return None
                last = f"GET /readyz answered {status}"
            except OSError as e:
                last = f"GET /readyz failed: {e}"
            time.sleep(READY_POLL_S)
        self.kill()
        return f"not ready within {self.ready_timeout:.0f} s ({last})"

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Sends SIGTERM and returns the exit code.

        Fails when the process is still running after timeout seconds (it
        is then killed), or when its log holds a sanitizer report.
        """
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._fail(f"{self.role} did not exit within {timeout:.0f} s "
                       "of SIGTERM; killed it")
        self._reap(code)
        self.check_log()
        return code

    def kill(self):
        """SIGKILL, for crash tests and cleanup; checks nothing."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap(self.proc.wait())
        return self.exit_code

    def _reap(self, code):
        self.exit_code = code
        self.proc = None
        _live.discard(self)

    def close(self):
        """Kills the process if it still runs and removes the temp dir."""
        self.kill()
        if self._failed or os.environ.get("MARQUEE_KEEP_TMP"):
            print(f"support: kept {self.tmpdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None:
                self._failed = True
                self.kill()
                print(f"support: {self.role} log tail:\n{self.log_tail()}",
                      file=sys.stderr)
                return False
            code = self.stop()
            if code != 0:
                self._fail(f"{self.role} exited with {describe_exit(code)} "
                           "after SIGTERM; 0 expected")
            return False
        finally:
            self.close()

    # ------------------------------------------------------------ log

    def log(self):
        """Everything the process wrote to stdout and stderr, as text."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        return "\n".join(self.log().splitlines()[-lines:])

    def check_log(self):
        """Fails when the log holds a sanitizer report."""
        text = self.log()
        found = [at for at in map(text.find, SANITIZER_MARKS) if at >= 0]
        if found:
            # From the line before the first mark: ASan's "=====" rule.
            start = text.rfind("\n", 0, min(found))
            start = text.rfind("\n", 0, max(0, start)) + 1
            self._fail(f"{self.role} log has a sanitizer report:\n"
                       f"{text[start:start + 6000]}", tail=False)

    def _fail(self, message, tail=True):
        self._failed = True
        if tail:
            message += f"\n--- {self.log_path}, last lines:\n{self.log_tail()}"
        raise AssertionError(message)

    # ------------------------------------------------------------ HTTP

    def request(self, method, path, body=None, headers=None,
                timeout=REQUEST_TIMEOUT_S):
        """One HTTP/1.1 request on a new connection.

        body may be bytes, str, or a JSON-able dict or list (sent with
        Content-Type: application/json unless headers say otherwise).
        Returns (status, headers with lower-case names, body bytes); a
        repeated header's values are joined with ", ".
        """
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            got = {}
            for name, value in resp.getheaders():
                name = name.lower()
                got[name] = f"{got[name]}, {value}" if name in got else value
            return resp.status, got, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None,
             timeout=REQUEST_TIMEOUT_S):
        """Like request(), with the body parsed as JSON (None when empty)."""
        status, got, data = self.request(method, path, body, headers, timeout)
        if not data:
            return status, got, None
        try:
            return status, got, json.loads(data)
        except ValueError as e:
            raise AssertionError(f"{method} {path} -> {status}: body is not "
                                 f"JSON ({e}): {data[:500]!r}") from None

    def raw_socket(self, timeout=REQUEST_TIMEOUT_S):
        """A connected TCP socket, for tests that write raw or slow HTTP."""
        return socket.create_connection((HOST, self.port), timeout=timeout)


def describe_exit(code):
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------- ApiSchema

class _SpecLoader(yaml.SafeLoader):
    """YAML without timestamp parsing: a date in the spec stays a string,
    as JSON Schema and the JSON on the wire see it."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_DATE_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch",
                "trace")


def _is_date_time(value):
    """RFC 3339 date-time; jsonschema checks it only with an extra module."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME_RE.match(value):
        return False
    try:
        datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _format_checker():
    # A copy of the default checks, so that adding one changes no global.
    checker = jsonschema.FormatChecker(
        formats=list(jsonschema.FormatChecker.checkers))
    checker.checks("date-time")(_is_date_time)
    return checker


def _pointer(tokens):
    """A URI fragment holding the JSON pointer to tokens."""
    escaped = (str(t).replace("~", "~0").replace("/", "~1") for t in tokens)
    return "#/" + "/".join(urllib.parse.quote(t, safe="~") for t in escaped)


def _json_path(path):
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class ApiSchema:
    """Checks responses against an OpenAPI 3.1 description."""

    _default = None
    _by_path = {}

    def __init__(self, spec=None):
        """spec: the parsed description (a dict), or a path to its YAML
        file; by default docs/api/openapi.yaml."""
        if spec is None or isinstance(spec, str):
            with open(spec or SPEC_PATH, encoding="utf-8") as f:
                spec = yaml.load(f, Loader=_SpecLoader)
        if not isinstance(spec, dict) or "paths" not in spec:
            raise ValueError("not an OpenAPI description: no paths")
        # A copy in JSON's terms: YAML reads an unquoted 200 as a number,
        # but JSON pointers and the wire know only strings.
        self.spec = json.loads(json.dumps(spec, default=str))
        self.formats = _format_checker()
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+",
                                     re.escape(t)) + "$"), t)
            for t in self.spec["paths"]]

    @classmethod
    def default(cls):
        """docs/api/openapi.yaml, parsed once per process."""
        if cls._default is None:
            cls._default = cls()
        return cls._default

    @classmethod
    def for_file(cls, name):
        """Another description, parsed once per process.

        name is a file of docs/api ("booking.yaml"), or a path: absolute,
        or relative to the repository root.  for_file("openapi.yaml") is
        default().
        """
        if os.path.isabs(name):
            path = name
        elif os.path.dirname(name):
            path = os.path.join(ROOT, name)
        else:
            path = os.path.join(API_DIR, name)
        path = os.path.realpath(path)
        if path == os.path.realpath(SPEC_PATH):
            return cls.default()
        if path not in cls._by_path:
            cls._by_path[path] = cls(path)
        return cls._by_path[path]

    # ------------------------------------------------------------ lookup

    def _at(self, tokens):
        node = self.spec
        for t in tokens:
            node = node[t]
        return node

    def _deref(self, tokens):
        """Follows $ref chains of OpenAPI objects (responses, headers...).

        Returns (object, tokens of where it really is)."""
        seen = set()
        node = self._at(tokens)
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise AssertionError(f"unsupported or circular $ref {ref!r} "
                                     f"at {_pointer(tokens)}")
            seen.add(ref)
            tokens = [urllib.parse.unquote(t).replace("~1", "/")
                      .replace("~0", "~") for t in ref[2:].split("/")]
            try:
                node = self._at(tokens)
            except (KeyError, IndexError, TypeError):
                raise AssertionError(f"$ref {ref!r} points nowhere") from None
        return node, tokens

    def template_for(self, path):
        """The path template of the description that path matches."""
        if path in self.spec["paths"]:
            return path
        path = path.split("?", 1)[0]
        for regex, template in self._templates:
            if regex.match(path):
                return template
        raise AssertionError(f"path {path} is not in the API description")

    def _response(self, method, path, status):
        template = self.template_for(path)
        item, item_at = self._deref(["paths", template])
        op = item.get(method.lower()) if isinstance(item, dict) else None
        where = f"{method.upper()} {template}"
        if method.lower() not in HTTP_METHODS or not isinstance(op, dict):
            raise AssertionError(f"{where} is not in the API description")
        responses = op.get("responses") or {}
        keys = {str(k).upper(): k for k in responses}
        for key in (str(status), f"{str(status)[0]}XX", "DEFAULT"):
            if key in keys:
                tokens = item_at + [method.lower(), "responses", keys[key]]
                response, at = self._deref(tokens)
                return where, response, at
        raise AssertionError(
            f"{where}: status {status} is not documented (documented: "
            f"{', '.join(str(k) for k in responses) or 'none'})")

    # ------------------------------------------------------------ check

    def check(self, method, path_template, status, headers, body):
        """Checks one response; returns the parsed JSON body or None.

        path_template is a key of paths ("/v1/shows/{id}"), or a concrete
        path that matches one.  headers: names in lower case (as
        Service.request returns them).  Raises AssertionError saying what
        does not match.
        """
        where, response, at = self._response(method, path_template, status)
        where = f"{where} -> {status}"
        self._check_headers(where, response, at, headers)

        content = response.get("content") or {}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if not content:
            if body:
                raise AssertionError(f"{where}: documented without a body, "
                                     f"got {len(body)} bytes: {body[:200]!r}")
            return None
        media = {k.lower(): k for k in content}
        if ctype not in media:
            raise AssertionError(
                f"{where}: content type {ctype or '(none)'!r} is not "
                f"documented (documented: {', '.join(content)})")
        if not (ctype.endswith("/json") or ctype.endswith("+json")):
            return None
        try:
            data = json.loads(body)
        except ValueError as e:
            raise AssertionError(f"{where}: body is not JSON ({e}): "
                                 f"{body[:200]!r}") from None
        if "schema" not in (content[media[ctype]] or {}):
            return data
        self._validate(where, at + ["content", media[ctype], "schema"], data)
        return data

    def _check_headers(self, where, response, at, headers):
        for name in response.get("headers") or {}:
            header, _ = self._deref(at + ["headers", name])
            if (isinstance(header, dict) and header.get("required")
                    and name.lower() not in headers):
                raise AssertionError(f"{where}: required header {name} is "
                                     "missing")

    def _validate(self, where, schema_at, data):
        # The description itself is the root schema: its $ref to the
        # response schema, and every #/components/... ref inside that,
        # resolve within it.  OpenAPI's own keys are not JSON Schema
        # keywords, so validation ignores them.
        root = copy.copy(self.spec)
        root["$ref"] = _pointer(schema_at)
        validator = jsonschema.Draft202012Validator(
            root, format_checker=self.formats)
        errors = sorted(validator.iter_errors(data),
                        key=lambda e: (len(e.path), list(map(str, e.path))))
        if not errors:
            return
        lines = [f"{where}: body does not match {_pointer(schema_at)}:"]
        for e in errors[:5]:
            lines.append(f"  at {_json_path(e.path)}: {e.message}")
        if len(errors) > 5:
            lines.append(f"  ... and {len(errors) - 5} more")
        text = json.dumps(data)
        lines.append(f"  body: {text[:500]}{'...' if len(text) > 500 else ''}")
        raise AssertionError("\n".join(lines))


def settled(read, timeout=10.0, pause=0.2):
    """read()'s value once two reads pause seconds apart agree: a counter
    that a request bumps just after its answer has gone out."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(pause)
        now = read()
        if now == last:
            return now
        last = now
    return last


def run_refused_start(role, flags):
    """Runs role with flags as a Service would, in its own folder, for a
    start that must be refused; returns the CompletedProcess (stderr as
    bytes) once it exited, within 30 s."""
    svc = Service(role, flags=flags, start=False)
    svc.port = free_port()
    try:
        return subprocess.run([marquee_bin(), *svc.argv()[1:]],
                              cwd=svc.tmpdir, env=svc.env,
                              capture_output=True, timeout=30)
    finally:
        svc.close()
