"""A private RabbitMQ broker for a test suite.

RabbitBroker starts Debian's rabbitmq-server as a node of its own: its own
node name, AMQP port and distribution port (free loopback ports), its
database, logs and Erlang cookie ($HOME) in a temporary directory, no
plugins, no config file of the machine's.  It never touches the system
service.  Starting takes seconds, so start one per suite:

    from rabbit import RabbitBroker

    class QueueTest(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            cls.broker = RabbitBroker()
            cls.broker.start()
            cls.addClassCleanup(cls.broker.close)

        def test_x(self):
            url = self.broker.url   # amqp://guest:guest@127.0.0.1:PORT/

kill() ends the node with SIGKILL (a crash: only what was on disk stays),
stop() asks it to stop, and start() again brings the same node back on the
same ports with the same data.  Ready means the node answers an AMQP
handshake on its port: the listener opens last in the boot.

Runs as root without systemd: the node runs as whoever starts it, the
wrapper in /usr/sbin (which switches to the rabbitmq user and its paths)
is not used.  Erlang's epmd daemon, started by the first node, stays
running as a daemon shared by every node of the machine.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.2
CTL_TIMEOUT_S = 30.0
# The first bytes of an AMQP 0-9-1 client, then what a broker answers: a
# method frame (type 1) on channel 0, connection.start (class 10, id 10).
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CONNECTION_START = b"\x01\x00\x00"

_live = set()


@atexit.register
def _kill_leftovers():
    for broker in list(_live):
        broker.close()


def available():
    """True when rabbitmq-server is installed."""
    return os.access(SERVER, os.X_OK)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class RabbitBroker:
    """One private rabbitmq-server node; see the module's text."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="marquee-rabbit-")
        self.port = _free_port()
        self.dist_port = _free_port()
        self.node = f"marquee{self.port}@localhost"
        self.proc = None
        self.log_file = None
        for sub in ("home", "mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            # guest may log in from loopback only, which is where we are.
            f.write("loopback_users.guest = true\n")

    @property
    def url(self):
        return f"amqp://guest:guest@{HOST}:{self.port}/"

    def env(self):
        """The environment of the node and of its command-line tools."""
        env = dict(os.environ)
        env.update({
            "HOME": os.path.join(self.dir, "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE":
                os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE":
                os.path.join(self.dir, "advanced.config"),
            # Not the machine's /etc/rabbitmq/rabbitmq-env.conf.
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "env.conf"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "node.pid"),
        })
        return env

    def start(self, timeout=START_TIMEOUT_S):
        """Starts the node (again, after kill() or stop()) and waits until
        it accepts AMQP connections."""
        assert self.proc is None, "already running"
        if not available():
            raise RuntimeError(f"{SERVER} is not installed")
        self.log_file = open(os.path.join(self.dir, "server.out"), "ab")
        # A session of its own: kill() ends the wrapper and the node.
        self.proc = subprocess.Popen(
            [SERVER], env=self.env(), cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
        _live.add(self)
        deadline = time.monotonic() + timeout
        while not self.answers_amqp():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reaped()
                raise RuntimeError(
                    f"rabbitmq-server exited with {code} while starting; "
                    f"log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"rabbitmq-server not ready after {timeout} s; "
                    f"log:\n{self.log_tail()}")
            time.sleep(POLL_S)

    def answers_amqp(self):
        """True when the port answers an AMQP header with
        connection.start."""
        try:
            with socket.create_connection((HOST, self.port), 1.0) as s:
                s.settimeout(2.0)
                s.sendall(AMQP_HEADER)
                return s.recv(7).startswith(CONNECTION_START)
        except OSError:
            return False

    def ctl(self, *args, timeout=CTL_TIMEOUT_S):
        """Runs rabbitmqctl against this node; returns its output."""
        out = subprocess.run(
            [CTL, "-n", self.node, *args], env=self.env(),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=True)
        return out.stdout

    def kill(self):
        """SIGKILL to the node and its wrapper: a crash."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # The node runs under the wrapper in the same session; its pid
        # file names it in case it left the group.
        pid = self._node_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._wait_port_closed()
        self._reaped()

    def stop(self, timeout=STOP_TIMEOUT_S):
        """Asks the node to stop; kills it past the timeout."""
        if self.proc is None:
            return
        try:
            self.ctl("stop", timeout=timeout)
            self.proc.wait(timeout=timeout)
            self._reaped()
        except (subprocess.SubprocessError, OSError):
            self.kill()

    def close(self):
        """Ends the node and removes its directory."""
        self.kill()
        _live.discard(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines=40):
        path = os.path.join(self.dir, "log", f"{self.node}.log")
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _node_pid(self):
        try:
            with open(os.path.join(self.dir, "node.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _wait_port_closed(self, timeout=STOP_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), 0.5).close()
            except OSError:
                return
            time.sleep(POLL_S)

    def _reaped(self):
        self.proc = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        try:
            os.unlink(os.path.join(self.dir, "node.pid"))
        except OSError:
            pass
