#!/usr/bin/env python3
"""`./dev bench capacity`: CAPACITY.md's per-replica figures, checked on the local cluster.

For each N of --replicas, `scripts/cluster up --infer-replicas N --stream-engine none` on the
servers of `./dev services`, each N under a prefix of its own, so that no run sees another's
topics, groups or database. --warmup-images go through it unmeasured; then `iotinfer produce`
sends a backlog of --images as fast as it can, and the run lasts until the sink's /metrics
count every one of them stored. Reported: images/s from the first measured image's
`produced_at` to that moment, and each process's CPU (user + system, from /proc) over the run
per image it handled: its own count for each `infer` replica and the sink, every image for
the broker, the store and the devices. Then `cluster down`.

Writes its block into CAPACITY.md (--report).
"""
import datetime
import os
import re
import resource
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pymongo
from confluent_kafka.admin import AdminClient

from benchmarks import driver_arguments, machine_line, server_name, write_section
from latency import cpu_seconds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL 15"}


def metrics(port):
    """The unlabelled samples of the /metrics of the component on `port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) ([0-9.e+-]+)$", text, re.M)}


class Cluster:
    """scripts/cluster, as the tests run it, with a state directory of its own: a `./dev
    cluster` that is up is neither seen nor disturbed, and the logs of each N are kept."""

    def __init__(self, args, state, replicas, prefix):
        self.args, self.state, self.replicas, self.prefix = args, state, replicas, prefix
        self.env = dict(os.environ, IOTINFER_BIN=args.iotinfer, IOTINFER_CLUSTER_STATE=state)
        self.images_topic, self.inferences_topic = f"{prefix}images", f"{prefix}inferences"
        self.database = f"{prefix.replace('-', '_')}iotinfer"
        self.infer_ports = [args.base_port + 10 + i for i in range(replicas)]
        self.sink_port = args.base_port + 1

    def up(self):
        busy = [p for p in [self.sink_port, *self.infer_ports] if not port_free(p)]
        if busy:
            raise SystemExit(f"bench capacity: ports {busy} are taken; pick another --base-port")
        subprocess.run([CLUSTER, "up", "--infer-replicas", str(self.replicas), "--stream-engine", "none",
                                    "--prefix", self.prefix, "--base-port", str(self.args.base_port)],
                       env=self.env, check=True, stdout=subprocess.DEVNULL, timeout=300)

    def down(self):
        down = subprocess.run([CLUSTER, "down"], env=self.env, capture_output=True, text=True, timeout=300)
        if down.returncode != 0:
            # The figures were read before; an unclean stop is worth knowing, not worth losing them.
            print(f"bench capacity: cluster down: {down.stderr.strip()} (logs in {self.state})", flush=True)

    def produce(self, images, run_id, log):
        """`iotinfer produce` into the images topic, started; its output goes to `log`."""
        return subprocess.Popen([CLUSTER, "produce", "--images", str(images), "--producers",
                                 str(self.args.producers), "--run-id", run_id],
                                env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def pids(self):
        """Each component's process: the iotinfer that cluster up started, not a wrapper."""
        names = [f"infer-{i}" for i in range(self.replicas)] + ["sink"]
        pids = {name: int(open(os.path.join(self.state, f"{name}.pid")).read()) for name in names}
        for name, pid in pids.items():
            if open(f"/proc/{pid}/comm").read().strip() != "iotinfer":
                raise SystemExit(f"bench capacity: the pid file of {name} names no iotinfer process")
        return pids

    def handled(self):
        """Images each component has taken so far: what it consumed (infer), what it stored (sink)."""
        counts = {f"infer-{i}": metrics(port)["iotinfer_infer_consumed_total"]
                  for i, port in enumerate(self.infer_ports)}
        counts["sink"] = metrics(self.sink_port)["iotinfer_sink_stored_total"]
        return counts


def port_free(port):
    with socket.socket() as s:
        # As the components' HTTP servers bind: the previous cluster's connections in TIME_WAIT
        # do not keep them off their ports, a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for_assignment(args, cluster, timeout_s=90):
    """Until every partition has its reader: cluster up returns once each replica answers
    /readyz, which a replica that is about to lose half its partitions to the next one's join
    also does. A rebalance in the measured run would stop the replicas for its duration."""
    topics = AdminClient({"bootstrap.servers": args.brokers}).list_topics(timeout=30).topics
    partitions = {name: len(topics[name].partitions) for name in (cluster.images_topic, cluster.inferences_topic)}
    holding = min(cluster.replicas, partitions[cluster.images_topic])
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        infer = [metrics(port)["iotinfer_infer_partitions"] for port in cluster.infer_ports]
        sink = metrics(cluster.sink_port)["iotinfer_sink_partitions"]
        if (sum(infer) == partitions[cluster.images_topic] and sum(1 for p in infer if p) == holding
                and sink == partitions[cluster.inferences_topic]):
            return partitions[cluster.images_topic]
        time.sleep(0.2)
    raise SystemExit(f"bench capacity: partitions not assigned in {timeout_s} s (infer {infer}, sink {sink}); "
                     f"logs in {cluster.state}")


def wait_until_stored(cluster, total, pids, produce, timeout_s):
    """Until the sink has stored `total` images in all; polled often, as the run lasts seconds."""
    deadline = time.time() + timeout_s
    while metrics(cluster.sink_port)["iotinfer_sink_stored_total"] < total:
        if time.time() > deadline:
            raise SystemExit(f"bench capacity: not every image stored in {timeout_s} s; logs in {cluster.state}")
        if produce.poll():
            raise SystemExit(f"bench capacity: produce exited {produce.returncode}; logs in {cluster.state}")
        for name, pid in pids.items():
            if not os.path.exists(f"/proc/{pid}"):
                raise SystemExit(f"bench capacity: {name} exited; logs in {cluster.state}")
        time.sleep(0.1)


def send(cluster, images, run_id, pids, timeout_s):
    """Sends `images` and waits until they are stored; returns when that was, and produce's CPU
    seconds."""
    stored_before = metrics(cluster.sink_port)["iotinfer_sink_stored_total"]
    log_path = os.path.join(cluster.state, f"produce-{run_id}.log")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_path, "w") as log:
        produce = cluster.produce(images, run_id, log)
        try:
            wait_until_stored(cluster, stored_before + images, pids, produce, timeout_s)
            stored = time.time()
            produce.wait(timeout_s)
        finally:
            if produce.poll() is None:
                produce.kill()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if produce.returncode != 0 or f"acknowledged {images}, failed 0" not in open(log_path).read():
        raise SystemExit(f"bench capacity: produce did not send every image; see {log_path}")
    return stored, after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime


def measure(args, replicas, run_id, state):
    """One cluster of `replicas` infer replicas: its figures, as report_lines shows them."""
    prefix = f"cap{run_id}-{replicas}-"
    cluster = Cluster(args, os.path.join(state, f"replicas-{replicas}"), replicas, prefix)
    cluster.up()
    try:
        partitions = wait_for_assignment(args, cluster)
        pids = cluster.pids()
        if args.warmup_images:
            send(cluster, args.warmup_images, f"w{run_id}{replicas}", pids, args.timeout)
        pids.update(broker=args.broker_pid, store=args.store_pid)
        handled_before, cpu_before = cluster.handled(), {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.time()
        stored, produce_cpu = send(cluster, args.images, f"m{run_id}{replicas}", pids, args.timeout)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        handled = {name: count - handled_before[name] for name, count in cluster.handled().items()}
    finally:
        cluster.down()
    cpu["devices"] = produce_cpu
    handled.update(broker=args.images, store=args.images, devices=args.images)

    client = pymongo.MongoClient(args.mongo, tz_aware=True)
    images = client[cluster.database]["images"]
    count = images.count_documents({})
    if count != args.warmup_images + args.images:
        raise SystemExit(f"bench capacity: {count} documents in {cluster.database}, "
                         f"not {args.warmup_images + args.images}")
    # The warm-up was stored before `started`: the first image produced after it is the run's.
    since = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    first = images.find({"produced_at": {"$gte": since}}).sort("produced_at", 1).limit(1).next()["produced_at"]
    client.drop_database(cluster.database)
    admin = AdminClient({"bootstrap.servers": args.brokers})
    ours = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    for future in admin.delete_topics(ours).values():
        future.result(30)

    wall = stored - first.timestamp()
    return {"replicas": replicas, "partitions": partitions, "wall": wall, "per_s": args.images / wall,
            "window": stored - started, "cpu": cpu, "handled": handled, "logs": cluster.state}


def replicas_text(n):
    return f"{n} `infer` replica{'' if n == 1 else 's'}"


def report_lines(args, results, facts):
    us = lambda seconds, images: f"{1e6 * seconds / images:,.0f} us" if images else "-"
    infers = lambda r: [name for name in r["cpu"] if name.startswith("infer-")]
    lines = [f"### Check: per-replica CPU on the local cluster ({time.strftime('%Y-%m-%d')})", "",
             f"{machine_line()} Apache Kafka {args.kafka_version} and {facts['store']} on 127.0.0.1 "
             f"(`./dev services`), topics of {results[0]['partitions']} partitions. For each number of `infer` "
             f"replicas: `scripts/cluster up --infer-replicas N --stream-engine none` (each replica `--threads 1`, "
             f"one `sink`, defaults otherwise) on a fresh prefix; {args.warmup_images:,} images through it "
             f"unmeasured; then a backlog of {args.images:,} images from {args.producers} devices (`iotinfer "
             f"produce`, as fast as it sends, stored PNGs), every process on the same cores. Images/s: from the "
             f"first image's `produced_at` until the sink's /metrics count the last one stored. CPU: user + system "
             f"time from /proc, from just before `produce` starts until then, per image the process handled (an "
             f"`infer` replica: the images it consumed; the sink: those it stored; the others: every image; the "
             f"broker's and the store's include their idle work). Cores: CPU time over that window.{facts['note']}",
             "", "| infer replicas | images/s | `infer` (all replicas) | broker | `sink` | store | `sink` + store | "
             "devices | every process | cores busy |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cpu, handled = r["cpu"], r["handled"]
        infer_cpu = sum(cpu[n] for n in infers(r))
        infer_images = sum(handled[n] for n in infers(r))
        lines.append(f"| {r['replicas']} | {r['per_s']:,.0f} | {us(infer_cpu, infer_images)} | "
                     f"{us(cpu['broker'], args.images)} | {us(cpu['sink'], handled['sink'])} | "
                     f"{us(cpu['store'], args.images)} | {us(cpu['sink'] + cpu['store'], args.images)} | "
                     f"{us(cpu['devices'], args.images)} | {us(sum(cpu.values()), args.images)} | "
                     f"{sum(cpu.values()) / r['window']:.2f} of {os.cpu_count()} |")
    for r in results:
        lines += ["", f"{replicas_text(r['replicas'])}: {args.images:,} images in {r['wall']:.2f} s, "
                  f"{r['per_s']:,.0f} images/s.", "", "| process | images handled | CPU per image | cores busy |",
                  "|---|---:|---:|---:|"]
        for name, seconds in r["cpu"].items():
            label = {"broker": "broker", "store": "store", "devices": "devices (`iotinfer produce`)"}.get(
                name, f"`{name}`")
            lines.append(f"| {label} | {r['handled'][name]:,.0f} | {us(seconds, r['handled'][name])} | "
                         f"{seconds / r['window']:.2f} |")
    return lines


def main():
    ap = driver_arguments(__doc__)
    ap.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--store-pid", type=int, required=True)
    ap.add_argument("--store-backend", default="sqlite", help="FerretDB's backend (sqlite, postgresql), or empty")
    ap.add_argument("--kafka-version", default="3.9.1")
    ap.add_argument("--replicas", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 3],
                    help="numbers of infer replicas, one cluster each")
    ap.add_argument("--images", type=int, default=30000, help="the measured backlog, per cluster")
    ap.add_argument("--warmup-images", type=int, default=20000,
                    help="images through each cluster first, unmeasured: the replicas' first batches, and a "
                         "broker just started, which spends about twice the CPU per message until its JIT has "
                         "warmed up")
    ap.add_argument("--producers", type=int, default=24, help="devices; enough keys for every partition")
    ap.add_argument("--base-port", type=int, default=9600,
                    help="the clusters' endpoint ports (scripts/cluster.sh); not ./dev cluster's 9400")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a cluster may take to store a batch")
    args = ap.parse_args()

    run_id = uuid.uuid4().hex[:8]
    state = tempfile.mkdtemp(prefix="iotinfer-bench-capacity-")
    results = []
    for replicas in args.replicas:
        r = measure(args, replicas, run_id, state)
        print(f"{replicas_text(replicas)}: {r['per_s']:,.0f} images/s; CPU us per image: "
              + ", ".join(f"{name} {1e6 * s / r['handled'][name]:.0f}" for name, s in r["cpu"].items()
                          if r["handled"][name])
              + f"; logs in {r['logs']}", flush=True)
        results.append(r)
    backend = BACKENDS.get(args.store_backend, args.store_backend)
    note = (" PostgreSQL's own processes, under FerretDB, are not counted in the store's CPU."
            if args.store_backend == "postgresql" else "")
    facts = {"store": server_name(args.mongo, backend), "note": note}
    print(write_section(args.report, "capacity", report_lines(args, results, facts)))


if __name__ == "__main__":
    main()
