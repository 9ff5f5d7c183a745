"""The local cluster (scripts/cluster, what `./dev cluster` runs) works as the chart's topology.

Two `infer` replicas, a sink and a native stream start as processes against the local Kafka
and MongoDB servers, each with its own endpoint port. The replicas must split the six
partitions of the images topic between them and both do work; every one of M images must
end up stored exactly once, and the live per-producer counts must equal what the stored
documents say. `cluster down` must stop every process cleanly.

Run by ctest against the servers the `kafka` and `mongo` fixtures start:
  cluster_test.py --iotinfer build/iotinfer [--mongo mongodb://127.0.0.1:27017]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.request
import uuid

import pymongo

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from waiting import wait_for  # noqa: E402 (tests/waiting.py, beside this directory)

ARGS = None
CLUSTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "cluster")
IMAGES = 2000
PRODUCERS = 24  # enough keys that all six partitions get images


def free_base_port():
    """A base port whose cluster ports (base+1, base+2, base+10, base+11) are all free."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1] - 10
        if base < 1024 or base > 65400:
            continue
        try:
            for port in (base + 1, base + 2, base + 10, base + 11):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) ([0-9.e+-]+)$", text, re.M)}


class ClusterTest(unittest.TestCase):
    def test_two_infer_replicas_split_the_partitions_and_store_each_image_once(self):
        run = uuid.uuid4().hex[:8]
        prefix, base = f"ct{run}-", free_base_port()
        state = tempfile.mkdtemp(prefix="iotinfer-cluster-")
        env = dict(os.environ, IOTINFER_BIN=ARGS.iotinfer, IOTINFER_CLUSTER_STATE=state)

        def cluster(*args):
            return subprocess.run([CLUSTER, *args], env=env, capture_output=True, text=True, timeout=180)

        up = cluster("up", "--infer-replicas", "2", "--prefix", prefix, "--base-port", str(base))
        try:
            self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
            rows = {line.split()[0]: line for line in up.stdout.splitlines()[1:] if line.split()}
            for name in ("infer-0", "infer-1", "sink", "stream"):
                self.assertRegex(rows.get(name, ""), r" yes$", up.stdout)
            infer_ports = (base + 10, base + 11)
            # Both are ready once they hold partitions; the second one's join may still be
            # moving half of the first one's over.
            split = lambda: [metrics(port)["iotinfer_infer_partitions"] for port in infer_ports] == [3, 3]
            wait_for("the replicas to split the six partitions", split, timeout=60)

            produce = cluster("produce", "--images", str(IMAGES), "--producers", str(PRODUCERS), "--format", "raw",
                              "--run-id", run)
            self.assertEqual(produce.returncode, 0, produce.stderr)
            self.assertIn(f"acknowledged {IMAGES}, failed 0", produce.stdout + produce.stderr)

            client = pymongo.MongoClient(ARGS.mongo, serverSelectionTimeoutMS=5000)
            self.addCleanup(client.close)
            database = client[f"{prefix.replace('-', '_')}iotinfer"]
            wait_for(f"{IMAGES} stored images", lambda: database["images"].count_documents({}) >= IMAGES)
            ids = [d["id"] for d in database["images"].find({}, {"id": 1})]
            self.assertEqual(len(ids), IMAGES)
            self.assertEqual(set(ids), {f"{run}-{i % PRODUCERS}-{i}" for i in range(IMAGES)})

            # Both replicas did work, and together read each image once: no batch was read twice.
            consumed = [metrics(port)["iotinfer_infer_consumed_total"] for port in infer_ports]
            self.assertTrue(all(c > 0 for c in consumed), consumed)
            self.assertEqual(sum(consumed), IMAGES)
            self.assertEqual(metrics(base + 1)["iotinfer_sink_stored_total"], IMAGES)

            # The live counts agree with the stored documents.
            expected = {}
            for d in database["images"].find({}, {"producer_id": 1, "image_prediction": 1, "actual_value": 1}):
                expected.setdefault(d["producer_id"], 0)
                expected[d["producer_id"]] += d["image_prediction"] != d["actual_value"]
            live = lambda: {d["producer_id"]: d["incorrect_count"]
                            for d in database["incorrect_inference_results"].find()}
            wait_for("the stream's counts to match the stored documents", lambda: live() == expected, timeout=30)
        finally:
            down = cluster("down")
            self.assertEqual(down.returncode, 0, down.stdout + down.stderr)
        for name in ("infer-0", "infer-1", "sink", "stream"):
            with open(os.path.join(state, f"{name}.log")) as log:
                self.assertRegex(log.read(), r"stopped", name)
        self.assertEqual(cluster("status").returncode, 3, "every component is stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
