"""The chaos run: the whole pipeline at the goal's scale, through every fault at once, loses nothing.

100,000 images at 2,000/s from 16 devices go through 3 Kafka brokers (replication factor 3,
min.insync.replicas 2), 2 `infer`, 1 `sink` and 1 native `stream` into the Mongo-wire server.
Meanwhile, on a schedule drawn from --seed and printed first:
  - 20 SIGKILLs spread over the infer replicas, the sink and the stream, each restarted;
  - one broker SIGKILLed, restarted 10 s later;
  - the store SIGKILLed, restarted 30 s later;
  - 30 s of network blackhole between the services and the store, and between the services and
    one broker: iptables drops every packet to their client ports.
Passes when `inferences` (read committed) holds exactly one record per image, the `images`
collection exactly those ids, the stream's counts equal a recount from the topic and
`batch --engine native`, the dead-letter topics are empty, and every process exits 0 on the final
SIGTERM. It prints how long each fault took to heal.

Everything runs in network, PID and mount namespaces of the test's own (it re-executes itself
under `unshare`): the servers listen on that namespace's 127.0.0.1, the iptables rules exist only
there, and nothing outlives the run. Needs root, iptables, and the servers installed
(`./dev test chaos` does all of it):
  chaos_test.py --iotinfer build/iotinfer [--seed N] [--images N] [--rate R]
"""

import argparse
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import pymongo
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

ARGS = None
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BROKER_PORTS = (9092, 9093, 9094)
BROKERS = ",".join(f"127.0.0.1:{p}" for p in BROKER_PORTS)
MONGO_PORT = 27017
STORE = f"mongodb://127.0.0.1:{MONGO_PORT}"
DATABASE = "chaos"
PRODUCERS = 16
CUT_BROKER = 2  # the broker the blackhole cuts the clients off
TOPICS = ("images", "inferences", "inferences.accepted", "images.dlq", "inferences.dlq")
T0 = time.monotonic()


def say(line):
    print(f"[{time.monotonic() - T0:7.1f}s] {line}", flush=True)


def in_private_namespaces():
    """Re-executes this script under unshare unless it already runs there; returns in the child."""
    if os.environ.get("IOTINFER_CHAOS_NAMESPACES") == "1":
        # The first process of a PID namespace ignores signals it has no handler for; its exit
        # ends every process of the namespace, servers included.
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, lambda received, _: os._exit(128 + received))
        # A new network namespace has its loopback down.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("16sH", b"lo", 0)
            flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, request)[:18])[1]  # SIOCGIFFLAGS
            fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
        return
    env = dict(os.environ, IOTINFER_CHAOS_NAMESPACES="1")
    # --kill-child and the PID namespace: whatever the run started dies with it.
    command = ["unshare", "--net", "--pid", "--mount", "--mount-proc", "--fork", "--kill-child",
               sys.executable, *sys.argv]
    os.execvpe("unshare", command, env)


def dev(*args, env=None):
    run = subprocess.run([os.path.join(ROOT, "dev"), *args], env=env, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise AssertionError(f"./dev {' '.join(args)} failed:\n{run.stdout}{run.stderr}")


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Servers:
    """The 3 brokers and the Mongo-wire server, started by ./dev services inside the namespace."""

    def __init__(self, state):
        self.env = dict(os.environ, IOTINFER_KAFKA_BROKERS="3", IOTINFER_KAFKA_DATA=os.path.join(state, "kafka"),
                        IOTINFER_MONGO_PORT=str(MONGO_PORT), IOTINFER_MONGO_DATA=os.path.join(state, "mongo"))
        self.state = state

    def up(self, *names):
        dev("services", "up", *names, env=self.env)

    def down(self, *names):
        dev("services", "down", *names, env=self.env)

    def kill(self, what):
        """SIGKILL to a server: "kafka/broker-N" or "mongo"."""
        with open(os.path.join(self.state, what, "pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        while True:  # until it is gone, or a zombie its parent has not reaped
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().split()[2] == "Z":
                        return
            except FileNotFoundError:
                return
            time.sleep(0.05)


class Service:
    """One iotinfer service process; its output is appended to a log across restarts."""

    def __init__(self, name, port, args, state):
        self.name, self.port = name, port
        self.args = [ARGS.iotinfer, *args, "--http-port", str(port), "--log-every-ms", "5000"]
        self.log_path = os.path.join(state, f"{name}.log")
        self.process = None
        self.lock = threading.Lock()
        self.unexpected_exits = []

    def start(self):
        with open(self.log_path, "a") as log:
            log.write(f"--- started at {time.monotonic() - T0:.1f}s\n")
            log.flush()
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)

    def ready(self):
        return http_get(self.port, "/readyz")[0] == 200

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return f"no exit within 60 s of SIGTERM (killed): {self.process.wait()}"

    def tail(self, lines=40):
        with open(self.log_path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])


def fully_replicated(admin):
    """Whether every partition of the pipeline's topics has all 3 replicas in sync."""
    try:
        topics = admin.list_topics(timeout=5).topics
    except Exception:
        return False
    for name in TOPICS:
        if name not in topics or topics[name].error:
            return False
        if any(len(p.isrs) < 3 for p in topics[name].partitions.values()):
            return False
    return True


def blackhole(on):
    action = "-A" if on else "-D"
    for port in (MONGO_PORT, BROKER_PORTS[CUT_BROKER - 1]):
        subprocess.run(["iptables", "-w", action, "OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port),
                        "-j", "DROP"], check=True, capture_output=True)


def read_topic(topic, settle=3.0):
    """Every committed record of `topic`, read until nothing new came for `settle` seconds."""
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"chaos-reader-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.subscribe([topic])
    records, quiet_since = [], time.monotonic()
    try:
        while time.monotonic() - quiet_since < settle:
            batch = consumer.consume(10000, timeout=0.5)
            real = [m for m in batch if not m.error()]
            if real:
                records += [m.value() for m in real]
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return records


class ChaosTest(unittest.TestCase):
    def test_nothing_is_lost_or_doubled_through_kills_outages_and_a_blackhole(self):
        seed, images, rate = ARGS.seed, ARGS.images, ARGS.rate
        state = tempfile.mkdtemp(prefix="iotinfer-chaos-")
        say(f"seed {seed}, {images} images at {rate}/s from {PRODUCERS} devices; state in {state}")
        servers = Servers(state)
        servers.up("kafka", "mongo")
        self.addCleanup(lambda: servers.down("kafka", "mongo"))

        common = ["--brokers", BROKERS]
        store = ["--store", STORE, "--db", DATABASE]
        services = {
            "infer-a": Service("infer-a", 18001, ["infer", *common, "--group", "chaos-infer", "--instance-id", "a",
                                                  "--threads", "1"], state),
            "infer-b": Service("infer-b", 18002, ["infer", *common, "--group", "chaos-infer", "--instance-id", "b",
                                                  "--threads", "1"], state),
            "sink": Service("sink", 18003, ["sink", *common, *store, "--group", "chaos-sink", "--instance-id", "0"],
                            state),
            "stream": Service("stream", 18004, ["stream", *common, *store, "--group", "chaos-stream"], state),
        }
        for service in services.values():
            service.start()
            self.addCleanup(lambda s=service: s.process.poll() is None and s.kill9())
        wait_for("every service to be ready", lambda: all(s.ready() for s in services.values()), 120)
        admin = AdminClient({"bootstrap.servers": BROKERS, "log_level": 3})  # errors only
        wait_for("topics with 3 replicas in sync", lambda: fully_replicated(admin), 60)
        say("pipeline ready; topics created by the services have 3 replicas")

        # The schedule, drawn up front so that it is printed whole and the same seed replays it.
        rng = random.Random(seed)
        schedule = []  # (at, kind, target, duration)
        for at in sorted(rng.uniform(3, 95) for _ in range(20)):
            schedule.append((at, "kill", rng.choice(sorted(services)), rng.uniform(0.5, 3.0)))
        schedule.append((rng.uniform(8, 15), "broker", CUT_BROKER % 3 + 1, 10.0))
        schedule.append((rng.uniform(30, 38), "store", None, 30.0))
        schedule.append((rng.uniform(70, 78), "blackhole", None, 30.0))
        schedule.sort()
        for at, kind, target, duration in schedule:
            say(f"  plan: at {at:5.1f}s {kind} {target or ''} for {duration:.1f}s")

        producer_log = open(os.path.join(state, "produce.log"), "w")
        start = time.monotonic()
        producer = subprocess.Popen(
            [ARGS.iotinfer, "produce", *common, "--images", str(images), "--producers", str(PRODUCERS),
             "--rate", str(rate), "--run-id", "chaos", "--seed", str(seed)],
            stdout=producer_log, stderr=subprocess.STDOUT)

        heals, healers, down = [], [], {}

        def all_ready():
            return all(s.ready() for s in services.values())

        def heal(label, ended, check, limit=300):
            def watch():
                deadline = ended + limit
                while time.monotonic() < deadline:
                    if check():
                        heals.append((label, time.monotonic() - ended))
                        return
                    time.sleep(0.1)
                heals.append((label, None))
            thread = threading.Thread(target=watch)
            thread.start()
            healers.append(thread)

        def supervise():
            """Restarts a service whose process ended by itself, as Kubernetes would; counts it."""
            while not done.is_set():
                for name, service in services.items():
                    with service.lock:
                        if name not in down and service.process.poll() is not None:
                            service.unexpected_exits.append(service.process.returncode)
                            say(f"{name} exited by itself with {service.process.returncode}; restarting it")
                            service.start()
                time.sleep(0.2)

        done = threading.Event()
        supervisor = threading.Thread(target=supervise)
        supervisor.start()
        events = []  # (at, action) in time order, including the ends of faults
        for at, kind, target, duration in schedule:
            events.append((at, kind, target, duration, "begin"))
            events.append((at + duration, kind, target, duration, "end"))
        events.sort(key=lambda e: e[0])
        workers = []

        def background(action):
            """Server starts and stops take seconds: they must not hold up the rest of the schedule."""
            thread = threading.Thread(target=action)
            thread.start()
            workers.append(thread)

        def restart_broker(broker):
            servers.up("kafka")
            say(f"restarted broker {broker}")
            heal(f"broker {broker} killed", time.monotonic(), lambda: fully_replicated(admin) and all_ready())

        def restart_store():
            servers.up("mongo")
            say("store started")
            heal("store outage", time.monotonic(), all_ready)

        for at, kind, target, duration, phase in events:
            time.sleep(max(0.0, start + at - time.monotonic()))
            if kind == "kill":
                service = services[target]
                if phase == "begin":
                    with service.lock:
                        if target in down or service.process.poll() is not None:
                            say(f"kill {target}: already down, skipped")
                            continue
                        down[target] = True
                        service.kill9()
                    say(f"SIGKILL {target}")
                elif down.pop(target, None):
                    with service.lock:
                        service.start()
                    say(f"restarted {target}")
                    heal(f"SIGKILL {target}", time.monotonic(), service.ready)
            elif kind == "broker":
                if phase == "begin":
                    servers.kill(f"kafka/broker-{target}")
                    say(f"SIGKILL broker {target}")
                else:
                    background(lambda b=target: restart_broker(b))
            elif kind == "store":
                if phase == "begin":
                    servers.kill("mongo")
                    say("store killed")
                else:
                    background(restart_store)
            elif kind == "blackhole":
                blackhole(phase == "begin")
                say(f"blackhole {'on' if phase == 'begin' else 'off'}: store and broker {CUT_BROKER}")
                if phase == "end":
                    heal("blackhole", time.monotonic(), all_ready)

        for thread in workers:
            thread.join()
        self.assertEqual(producer.wait(timeout=600), 0)
        producer_log.close()
        with open(producer_log.name) as log:
            produced = log.read()
        self.assertIn(f"acknowledged {images}, failed 0", produced)
        say(f"producer done after {time.monotonic() - start:.0f}s")

        # Drained: every image stored, and the stream's counts caught up.
        client = pymongo.MongoClient(STORE, serverSelectionTimeoutMS=10000)
        self.addCleanup(client.close)
        db = client[DATABASE]
        last_fault_end = start + max(at + duration for at, _, _, duration in schedule)
        wait_for(f"{images} stored images", lambda: db["images"].count_documents({}) >= images, 600)
        say(f"all images stored {time.monotonic() - last_fault_end:.0f}s after the last fault ended")

        expected_ids = {f"chaos-{i % PRODUCERS}-{i}" for i in range(images)}
        records = [json.loads(v) for v in read_topic("inferences")]
        ids = [r["id"] for r in records]
        self.assertEqual(len(set(ids)), len(ids), "a record twice in inferences")
        self.assertEqual(set(ids), expected_ids)
        recount = {}
        for r in records:
            recount[r["producer_id"]] = recount.get(r["producer_id"], 0) + (r["image_prediction"] != r["actual_value"])

        stored = [d["id"] for d in db["images"].find({}, {"id": 1})]
        self.assertEqual(len(stored), images)
        self.assertEqual(set(stored), expected_ids)

        def live():
            return {d["producer_id"]: d["incorrect_count"] for d in db["incorrect_inference_results"].find()}

        try:
            wait_for("the stream's counts to equal the recount", lambda: live() == recount, 120)
        finally:
            say(f"stream {live()}\nrecount {recount}")
        for topic in ("images.dlq", "inferences.dlq"):
            self.assertEqual(read_topic(topic, settle=1.0), [], f"dead letters in {topic}")

        done.set()
        supervisor.join()
        for thread in healers:
            thread.join()
        exits = {name: service.stop() for name, service in services.items()}
        for name, service in services.items():
            if exits[name] != 0:
                print(f"--- {name} log tail\n{service.tail()}")
        self.assertEqual(exits, {name: 0 for name in services})
        # A fault of the cluster is waited out, never a reason to exit: a service that gave up
        # (it was restarted, so that the run could go on) fails the run.
        crashes = {name: s.unexpected_exits for name, s in services.items() if s.unexpected_exits}
        say(f"services that exited by themselves during the run: {crashes or 'none'}")
        self.assertEqual(crashes, {}, "see their logs in the state directory")

        out = os.path.join(state, "batch")
        batch = subprocess.run([ARGS.iotinfer, "batch", *store, "--engine", "native", "--out", out],
                               capture_output=True, text=True, timeout=300)
        self.assertEqual(batch.returncode, 0, batch.stderr)
        with open(os.path.join(out, "results.csv")) as csv:
            rows = [line.split(",") for line in csv.read().splitlines()[1:]]
        self.assertEqual({int(r[0]): int(r[1]) for r in rows}, recount)

        say("how long each fault took to heal, from its end: a killed service until it was ready again;"
            " the store and the blackhole until every service was; the broker until every partition"
            " was fully replicated too")
        for label, seconds in sorted(heals, key=lambda h: -(h[1] or 1e9)):
            say(f"  {label:24} {'never' if seconds is None else f'{seconds:5.1f}s'}")
        self.assertNotIn(None, [seconds for _, seconds in heals], "a fault never healed")
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("IOTINFER_CHAOS_SEED", "20")))
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2000)
    ARGS, rest = parser.parse_known_args()
    in_private_namespaces()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
