"""The whole pipeline against only the secured servers of `./dev services up ... --secure`
(scripts/secure.sh): Kafka over SASL_SSL with SCRAM and ACLs, FerretDB over TLS with a
password, Spark Connect with a token behind TLS.

- produce -> infer -> sink -> stream (native) -> batch (native and spark) on 1,000 images, each
  service with its own Kafka account: every image ends stored or dead-lettered exactly once,
  and the live counts, the native batch and the Spark batch agree;
- no password, nor the token, appears in any service's log, /metrics output or
  /proc/<pid>/cmdline: every secret comes from a file or the environment;
- what is refused says why and exits 2: a wrong password, a CA that signed nothing of the
  servers', an account without the right to its transactional id or to the dead-letter topic,
  a store URI naming a user but no password, a wrong token.

Run by ctest with the kafka-secure, mongo-secure and spark-secure fixtures:
  secure_pipeline_test.py --iotinfer build/iotinfer --secure-dir .cache/secure
"""

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

import pymongo

ARGS = None
KAFKA = "127.0.0.1:9096"
KAFKA_ADMIN = "127.0.0.1:9098"
SPARK = "sc://127.0.0.1:15004"
IMAGES = 1000
ACCOUNTS = ["produce", "infer", "sink", "stream", "infer-no-txn", "infer-no-dlq"]


def secure(path):
    return str(pathlib.Path(ARGS.secure_dir) / path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def reset_pipeline():
    """Empty topics and no consumer groups: the accounts' ACLs name the default topics and
    groups, which every run of this test shares."""
    subprocess.run([sys.executable, str(pathlib.Path(__file__).parents[2] / "scripts/kafka/secure_setup.py"),
                    "--bootstrap", KAFKA_ADMIN, "--admin-config", secure("kafka/admin.properties"),
                    "--passwords", secure("passwords"), "--reset", *ACCOUNTS], check=True)


class Service:
    """An iotinfer service as a child process, its output kept for the secrets check."""

    def __init__(self, name, args, env=None):
        self.name, self.port = name, free_port()
        self.log = pathlib.Path(ARGS.work) / f"{name}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen([ARGS.iotinfer, name, "--http-port", str(self.port), *args],
                                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.output()}")
            if http_get(self.port, "/readyz")[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready in {timeout} s:\n{self.output()}")

    def metrics(self):
        return http_get(self.port, "/metrics")[1]

    def metric(self, name):
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def cmdline(self):
        return pathlib.Path(f"/proc/{self.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)
        return self.process.returncode

    def output(self):
        return self.log.read_text(errors="replace")


def run(args, env=None, timeout=300):
    """`iotinfer ARGS` to its end: (exit code, stdout and stderr)."""
    done = subprocess.run([ARGS.iotinfer, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout + done.stderr


def wait_until(condition, what, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class SecurePipelineTest(unittest.TestCase):
    def setUp(self):
        self.uri = pathlib.Path(secure("mongo/uri")).read_text().strip()
        self.mongo_password = pathlib.Path(secure("mongo/password")).read_text().strip()
        self.secrets = {f"kafka {a}": pathlib.Path(secure(f"passwords/kafka-{a}")).read_text() for a in ACCOUNTS}
        self.secrets["store"] = self.mongo_password
        self.secrets["spark token"] = pathlib.Path(secure("spark/token")).read_text().strip()
        for name, secret in self.secrets.items():
            self.assertGreaterEqual(len(secret), 16, name)
        self.services = []

    def tearDown(self):
        for service in self.services:
            service.stop()

    def kafka(self, account):
        return ["--brokers", KAFKA, "--kafka-config", secure(f"kafka/{account}.properties")]

    def store(self, database):
        return ["--store", self.uri, "--store-password-file", secure("mongo/password"), "--db", database]

    def spark(self):
        return ["--spark", SPARK, "--spark-token-file", secure("spark/token"), "--spark-ca", secure("pki/ca.pem")]

    def assertNoSecret(self, text, where):
        for name, secret in self.secrets.items():
            self.assertNotIn(secret, text, f"the {name} password is in {where}")

    def start(self, name, args, env=None):
        service = Service(name, args, env)
        self.services.append(service)
        return service

    def test_the_pipeline_counts_exactly_and_shows_no_secret(self):
        reset_pipeline()
        database = f"secure_{uuid.uuid4().hex[:8]}"
        infer = self.start("infer", [*self.kafka("infer"), "--threads", "1"])
        sink = self.start("sink", [*self.kafka("sink"), *self.store(database)])
        # The stream takes the store's password from the environment instead of a file.
        stream = self.start("stream", [*self.kafka("stream"), "--store", self.uri, "--db", database,
                                       "--health-window", "0"],
                            env={"IOTINFER_STORE_PASSWORD": self.mongo_password})
        for service in (infer, sink, stream):
            service.wait_ready()

        code, out = run(["produce", *self.kafka("produce"), "--images", str(IMAGES), "--producers", "8",
                         "--faults", "3:corrupt=0.05,5:noise=0.4", "--rate", "500"])
        self.assertEqual(code, 0, out)
        self.assertNoSecret(out, "produce's output")

        client = pymongo.MongoClient(self.uri, password=self.mongo_password, serverSelectionTimeoutMS=10000)
        self.addCleanup(client.close)
        images = client[database]["images"]
        wait_until(lambda: infer.metric("iotinfer_infer_inferred_total") +
                   infer.metric("iotinfer_infer_dead_lettered_total") >= IMAGES, "infer to take every image")
        inferred = infer.metric("iotinfer_infer_inferred_total")
        dead = infer.metric("iotinfer_infer_dead_lettered_total")
        self.assertEqual(inferred + dead, IMAGES)
        self.assertGreater(dead, 0, "device 3 sends cut payloads, which must be dead-lettered")
        wait_until(lambda: images.count_documents({}) >= inferred, "the sink to store every inference")
        time.sleep(1)  # anything more would be a second copy
        self.assertEqual(images.count_documents({}), inferred)
        self.assertEqual(len(images.distinct("id")), inferred)

        results = client[database]["incorrect_inference_results"]
        wait_until(lambda: sum(d["total"] for d in results.find()) == inferred, "the live counts")
        live = {d["producer_id"]: (d["incorrect_count"], d["total"]) for d in results.find()}
        for service in (infer, sink, stream):
            self.assertNoSecret(service.metrics(), f"{service.name}'s /metrics")
            self.assertNoSecret(service.cmdline(), f"{service.name}'s /proc/PID/cmdline")
        for service in (infer, sink, stream):
            self.assertEqual(service.stop(), 0, service.output())
            self.assertNoSecret(service.output(), f"{service.name}'s log")

        for engine in ("native", "spark"):
            args = ["batch", *self.store(database), "--engine", engine, "--out", f"{ARGS.work}/batch-{engine}"]
            code, out = run(args + (self.spark() if engine == "spark" else []))
            self.assertEqual(code, 0, out)
            self.assertNoSecret(out, f"batch --engine {engine}'s output")
            counted = {d["producer_id"]: (d["incorrect_count"], d["total"]) for d in results.find()}
            self.assertEqual(counted, live, f"batch --engine {engine} against the live counts")
        self.assertEqual(sum(total for _, total in live.values()), inferred)

    def test_what_is_refused_says_why_and_exits_2(self):
        work = pathlib.Path(ARGS.work)
        wrong_password = work / "wrong-password.properties"
        wrong_password.write_text(pathlib.Path(secure("kafka/produce.properties")).read_text().replace(
            f"sasl.password={self.secrets['kafka produce']}", "sasl.password=not-the-password"))
        untrusted = work / "untrusted-ca.properties"
        untrusted.write_text(pathlib.Path(secure("kafka/produce.properties")).read_text().replace(
            secure("pki/ca.pem"), secure("pki/untrusted-ca.pem")))
        (work / "wrong-store-password").write_text("not-the-password\n")
        (work / "wrong-token").write_text("not-the-token\n")
        produce = ["produce", "--brokers", KAFKA, "--images", "10"]
        batch = ["batch", "--out", str(work / "refused")]
        cases = [
            ("a wrong Kafka password", [*produce, "--kafka-config", str(wrong_password)],
             "invalid credentials"),
            ("a CA that did not sign the broker's certificate", [*produce, "--kafka-config", str(untrusted)],
             "certificate is not trusted"),
            ("a wrong store password", [*batch, "--store", self.uri, "--store-password-file",
                                        str(work / "wrong-store-password")], "Authentication failed"),
            ("a CA that did not sign the store's certificate",
             [*batch, "--store", self.uri.replace(secure("pki/ca.pem"), secure("pki/untrusted-ca.pem")),
              "--store-password-file", secure("mongo/password")], "tlsCAFile"),
            ("a store user without a password", [*batch, "--store", self.uri], "no password"),
            ("a wrong Spark Connect token",
             [*batch, *self.store("refused"), "--engine", "spark", "--spark", SPARK, "--spark-token-file",
              str(work / "wrong-token"), "--spark-ca", secure("pki/ca.pem")], "refused the credentials"),
            ("a CA that did not sign Spark Connect's certificate",
             [*batch, *self.store("refused"), "--engine", "spark", "--spark", SPARK, "--spark-token-file",
              secure("spark/token"), "--spark-ca", secure("pki/untrusted-ca.pem")], "certificate verify failed"),
            ("an account without the right to its transactional id",
             ["infer", *self.kafka("infer-no-txn")], "Transactional Id authorization failed"),
        ]
        for what, args, expected in cases:
            with self.subTest(what):
                code, out = run(args, timeout=120)
                self.assertEqual(code, 2, out)
                self.assertIn(expected, out)
                self.assertNoSecret(out, "the output")

        # May read images and write inferences, but not the dead letters: infer stops at the first
        # batch holding an image to dead-letter, naming the topics, and commits nothing.
        reset_pipeline()
        code, out = run(["produce", *self.kafka("produce"), "--images", "40", "--producers", "2",
                         "--faults", "1:corrupt=0.5"])
        self.assertEqual(code, 0, out)
        code, out = run(["infer", *self.kafka("infer-no-dlq"), "--threads", "1"], timeout=120)
        self.assertEqual(code, 2, out)
        self.assertIn("Topic authorization failed", out)
        self.assertIn("images.dlq", out)
        infer = self.start("infer", self.kafka("infer"))
        infer.wait_ready()
        wait_until(lambda: infer.metric("iotinfer_infer_inferred_total") +
                   infer.metric("iotinfer_infer_dead_lettered_total") == 40,
                   "every image, once, by the account that may dead-letter", timeout=60)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--secure-dir", required=True)
    parser.add_argument("--work", required=True, help="a directory for logs and outputs")
    ARGS, rest = parser.parse_known_args()
    os.makedirs(ARGS.work, exist_ok=True)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
