"""`marquee mq`, the operator's tool over the message queue.

Each test works on a queue file of its own in a temporary directory and
runs the real binary: declare, publish (with the queue's own dedup by
message id), depth, dead letters and requeue, and every misuse, which must
exit 2 with the usage before touching the file, while a failure of the
queue itself exits 1.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from support import SANITIZER_ENV, marquee_bin

RUN_TIMEOUT_S = 30


class MqctlTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="marquee-mqctl-")
        self.queue = os.path.join(self.tmp, "queue.db")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mq(self, *args, path=True, env=None):
        """Runs `marquee mq ARGS`; returns (exit code, stdout, stderr)."""
        argv = [marquee_bin(), "mq", *args]
        if path:
            argv.append(f"--mq.path={self.queue}")
        full_env = dict(os.environ)
        for k, v in SANITIZER_ENV.items():
            full_env.setdefault(k, v)
        full_env.update(env or {})
        p = subprocess.run(argv, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT_S, env=full_env,
                           cwd=self.tmp)
        for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(mark, p.stderr, p.stderr)
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, **kwargs):
        code, out, err = self.mq(*args, **kwargs)
        self.assertEqual(code, 0, f"mq {' '.join(args)}: {err}")
        return [json.loads(line) for line in out.splitlines()]

    def misuse(self, *args, says, **kwargs):
        code, out, err = self.mq(*args, **kwargs)
        self.assertEqual(code, 2, f"mq {' '.join(args)}: {out} {err}")
        self.assertEqual(out, "")
        self.assertIn(says, err)
        return err

    def test_declare_publish_depth(self):
        self.assertEqual(self.ok("declare", "orders", "booking.#", "show.*"),
                         [{"queue": "orders",
                           "patterns": ["booking.#", "show.*"]}])
        [got] = self.ok("publish", "--topic=booking.confirmed", "--id=m-1",
                        '--body={"n": 1}')
        self.assertEqual(got, {"topic": "booking.confirmed", "id": "m-1",
                               "bytes": 8, "stored": 1})
        # The same id again is the queue's duplicate: not stored twice.
        [got] = self.ok("publish", "--topic", "booking.confirmed", "--id",
                        "m-1", "--body", '{"n": 1}')
        self.assertEqual(got["stored"], 0)
        # A topic no binding matches is dropped, as RabbitMQ drops it.
        [got] = self.ok("publish", "--topic=payment.done", "--id=m-2",
                        "--body=x")
        self.assertEqual(got["stored"], 0)
        self.assertEqual(self.ok("depth", "orders"),
                         [{"queue": "orders", "ready": 1, "leased": 0,
                           "dead": 0}])
        self.assertEqual(self.ok("dead", "orders"), [])

    def test_body_file_and_environment(self):
        self.ok("declare", "files", "#")
        body = os.path.join(self.tmp, "body.json")
        with open(body, "wb") as f:
            f.write(b'{"seats": ["A1"]}\n')
        # The queue file named by the environment, as services read it.
        [got] = self.ok("publish", "--topic=a.b", "--id=f-1",
                        f"--body-file={body}", path=False,
                        env={"MARQUEE_MQ_PATH": self.queue})
        self.assertEqual(got["bytes"], 18)
        self.assertEqual(self.ok("depth", "files")[0]["ready"], 1)

        big = os.path.join(self.tmp, "big")
        with open(big, "wb") as f:
            f.write(b"x" * (64 * 1024 + 1))
        self.misuse("publish", "--topic=a.b", "--id=f-2",
                    f"--body-file={big}", says="larger than 65536 bytes")
        code, _, err = self.mq("publish", "--topic=a.b", "--id=f-3",
                               f"--body-file={self.tmp}/missing")
        self.assertEqual(code, 1)
        self.assertIn("cannot open", err)
        self.assertEqual(self.ok("depth", "files")[0]["ready"], 1)

    def test_misuse_exits_2_with_usage(self):
        err = self.misuse(path=False, says="a command is needed")
        self.assertIn("usage: marquee mq COMMAND", err)
        self.assertIn("mq.path", err)
        code, out, err = self.mq("publish", "--help")
        self.assertEqual((code, out), (2, ""))
        self.assertTrue(err.startswith("usage: marquee mq COMMAND"), err)
        self.misuse("vacuum", says='unknown command "vacuum"')
        self.misuse("publish", "--id=1", "--body=x",
                    says="publish needs --topic and --id")
        self.misuse("publish", "--topic=a", "--id=1",
                    says="one of --body and --body-file")
        self.misuse("publish", "--topic=a", "--id=1", "--body=x",
                    "--body-file=y", says="one of --body and --body-file")
        self.misuse("publish", "--topic=Bad.Topic", "--id=1", "--body=x",
                    says='bad topic "Bad.Topic"')
        self.misuse("publish", "--topic=a", "--id=has space", "--body=x",
                    says="bad id")
        self.misuse("publish", "--topic=a", "--topic=b", "--id=1",
                    "--body=x", says="--topic is given twice")
        self.misuse("publish", "--topic=a", "--id=1", "--body=x", "extra",
                    says='publish takes no argument "extra"')
        self.misuse("depth", says="depth takes 1 argument")
        self.misuse("depth", "a", "b", says="depth takes 1 argument")
        self.misuse("depth", "Bad", says='bad queue name "Bad"')
        self.misuse("depth", "q", "--limit=3",
                    says="depth takes no --after or --limit")
        self.misuse("dead", "q", "--limit=0", says="--limit must be")
        self.misuse("dead", "q", "--limit=257", says="--limit must be")
        self.misuse("dead", "q", "--after=-1", says="--after must be")
        self.misuse("dead", "q", "--topic=x", says="dead takes no --topic")
        self.misuse("requeue", "q", "zero", says="TAG must be")
        self.misuse("declare", "q", says="declare takes 2 to 17 arguments")
        self.misuse("declare", "q", "a.#.b.", says='bad pattern "a.#.b."')
        self.misuse("depth", "q", "--colour=red",
                    says="unknown option --colour")
        self.misuse("depth", "q", "--mq.max_attempts=0", says="mq.max_attempts")
        self.misuse("depth", "q", "--mq.nonsense=1", says="mq.nonsense")
        # None of it created the queue file.
        self.assertFalse(os.path.exists(self.queue))

    def test_failures_exit_1(self):
        code, out, err = self.mq("depth", "never-declared")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("no such queue", err)
        code, _, err = self.mq("dead", "never-declared")
        self.assertEqual(code, 1)
        code, _, err = self.mq("requeue", "never-declared", "7")
        self.assertEqual(code, 1)
        self.assertIn("no such dead letter", err)
        code, _, err = self.mq("depth", "q", path=False,
                               env={"MARQUEE_MQ_PATH":
                                    f"{self.tmp}/no/such/dir/q.db"})
        self.assertEqual(code, 1)
        self.assertIn("cannot open the queue", err)


if __name__ == "__main__":
    unittest.main()
