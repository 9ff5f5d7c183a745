"""The chart, installed with helm on ./dev k8s's real single-node cluster, runs the pipeline in pods.

From the images ./dev image built (imported into the node's containerd), with Kafka and the
Mongo-wire server of ./dev k8s at the node's address (deploy/helm/examples/local-k8s.yaml):
  1. helm install: the producer Job sends 20,000 images from 8 devices (two with fault profiles)
     at 500/s to 2 `infer` replicas (a StatefulSet), `sink` and a `stream` on Spark; in the
     middle of it an `infer` pod is deleted;
  2. helm upgrade, changing a value of infer (its pods roll) while the revision's own producer
     Job sends 20,000 more; then one changing only the model that serves, which the running
     infer pods take up without a restart;
  3. helm upgrade once more with no producer: the post-upgrade `batch` Job runs on everything,
     natively, then once more on Spark, whose executors are pods that Spark's Kubernetes
     scheduler starts; the live counts come from a Spark Structured Streaming query.
Passes when every service pod became Ready through its own probes and none restarted, a pod
runs as uid 10001 and cannot write to its root, `inferences` (read committed) holds exactly one
record per image, the `images` collection exactly those 40,000 ids, `incorrect_inference_results`
equals a recount from `images` after either batch, and `helm uninstall` leaves nothing of the
release. Each run has a namespace, topics, groups and a database of its own, all removed on
every way out.

Needs root and ./dev k8s up (./dev test k8s does that, and builds the images first):
  pipeline_test.py
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import pymongo
from confluent_kafka import Consumer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from waiting import wait_for  # noqa: E402 (tests/waiting.py, beside this directory)

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
NETNS = "/run/netns/iotinfer-k8s"
NODE_IP = "10.200.0.2"
BROKERS = f"{NODE_IP}:9092"
STORE = f"mongodb://{NODE_IP}:27017"
RUN = f"k8s{os.getpid()}"
NAMESPACE = f"iotinfer-{RUN}"
RELEASE = "iotinfer"
IMAGES_PER_RUN = 20000
PRODUCERS = 8
T0 = time.monotonic()


def say(line):
    print(f"[{time.monotonic() - T0:7.1f}s] {line}", flush=True)


def dev(*args, check=True, timeout=600):
    """./dev k8s ARGS (kubectl or helm as the cluster's administrator); stdout."""
    result = subprocess.run([os.path.join(ROOT, "dev"), "k8s", *args], capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"./dev k8s {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result.stdout


def kubectl(*args, **kwargs):
    return dev("kubectl", "-n", NAMESPACE, *args, **kwargs)


def helm(*args, **kwargs):
    return dev("helm", "-n", NAMESPACE, *args, **kwargs)


class ChartOnKubernetes(unittest.TestCase):
    def setUp(self):
        self.db = pymongo.MongoClient(STORE)[RUN]
        self.topics = {name: f"{name}-{RUN}" for name in ("images", "inferences", "images.dlq",
                                                          "inferences.dlq", "inferences.accepted")}
        self.values = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        json.dump({
            "topics": {"images": self.topics["images"], "inferences": self.topics["inferences"],
                       "imagesDlq": self.topics["images.dlq"], "inferencesDlq": self.topics["inferences.dlq"],
                       "accepted": self.topics["inferences.accepted"]},
            "mongodb": {"database": RUN},
            "infer": {"group": f"infer-{RUN}"},
            "sink": {"group": f"sink-{RUN}"},
            "stream": {"group": f"stream-{RUN}"},
            "producer": {"runId": "a", "images": IMAGES_PER_RUN, "producers": PRODUCERS},
        }, self.values)
        self.values.close()
        self.addCleanup(self.clean_up)

    def clean_up(self):
        helm("uninstall", RELEASE, "--wait", "--timeout", "120s", check=False)
        dev("kubectl", "delete", "namespace", NAMESPACE, "--wait", "--timeout=120s", "--ignore-not-found", check=False)
        self.db.client.drop_database(RUN)
        self.db.client.close()
        os.unlink(self.values.name)

    def stored(self, run):
        return self.db.images.count_documents({"id": {"$regex": f"^{run}-"}})

    def wait_stored(self, run, timeout=300):
        wait_for(f"{IMAGES_PER_RUN} images of run {run} stored (have {self.stored(run)})",
                 lambda: self.stored(run) >= IMAGES_PER_RUN, timeout, every=2)

    def pods(self, component):
        out = json.loads(kubectl("get", "pods", "-l", f"app.kubernetes.io/component={component}", "-o", "json"))
        return out["items"]

    def services_ready(self, components=("infer", "sink", "stream", "spark-connect")):
        for component in components:
            kubectl("wait", "--for=condition=Ready", "pod", "-l", f"app.kubernetes.io/component={component}",
                    "--timeout=180s", timeout=200)
            for pod in self.pods(component):
                container = pod["spec"]["containers"][0]
                # Ready through the pod's own probes, not for want of any.
                self.assertIn("readinessProbe", container, pod["metadata"]["name"])
                self.assertIn("livenessProbe", container, pod["metadata"]["name"])

    def read_inferences(self):
        consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"check-{RUN}", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False, "isolation.level": "read_committed"})
        consumer.subscribe([self.topics["inferences"]])
        ids, quiet_since = [], time.monotonic()
        while time.monotonic() - quiet_since < 10:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            ids.append(json.loads(message.value())["id"])
            quiet_since = time.monotonic()
        consumer.close()
        return ids

    def test_the_pipeline_runs_in_pods_through_a_deleted_pod_and_an_upgrade(self):
        chart = os.path.join(ROOT, "deploy", "helm", "iotinfer")
        base = os.path.join(ROOT, "deploy", "helm", "examples", "local-k8s.yaml")
        say(f"helm install {RELEASE} in namespace {NAMESPACE}")
        helm("install", RELEASE, chart, "--create-namespace", "-f", base, "-f", self.values.name)
        # The producer Job starts at once: infer's pods are the ones to catch in the middle of it.
        self.services_ready(["infer"])
        victim = f"{RELEASE}-infer-1"
        # Counted without a filter, which the store answers at once: run a is all there is yet.
        wait_for("a tenth of run a stored", lambda: self.db.images.count_documents({}) >= IMAGES_PER_RUN // 10, 180,
                 every=0.2)
        kubectl("delete", "pod", victim, "--wait=false")
        at = self.db.images.count_documents({})
        say(f"deleted pod {victim} at {at} images stored")
        self.assertLess(at, IMAGES_PER_RUN, "the pod was deleted after the run, not during it")
        self.services_ready()
        say("every service pod is Ready")
        self.wait_stored("a")
        say("run a stored")

        say("helm upgrade: infer's batch wait changes (its pods roll) while run b is sent")
        helm("upgrade", RELEASE, chart, "--reuse-values", "--set", "infer.batchWaitMs=25",
             "--set", "producer.runId=b")
        self.wait_stored("b")
        kubectl("rollout", "status", f"statefulset/{RELEASE}-infer", "--timeout=180s", timeout=200)
        say("run b stored; infer rolled")
        self.services_ready()

        say("helm upgrade: the augmented model serves, taken up by the running infer pods")
        def incarnations():
            return {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0]["restartCount"])
                    for p in self.pods("infer")}
        before = incarnations()
        # No producer: each revision's producer Job would send its run again.
        helm("upgrade", RELEASE, chart, "--reuse-values", "--set", "infer.models.active=fmnist-cnn-aug.onnx",
             "--set", "producer.enabled=false")
        # The kubelet brings a ConfigMap's change into its pods' volumes within its sync period
        # (a minute) and its cache's lifetime.
        wait_for("every infer pod serving fmnist-cnn-aug",
                 lambda: all("now serving model fmnist-cnn-aug-" in kubectl("logs", name) for name in before), 240,
                 every=5)
        self.assertEqual(incarnations(), before, "an infer pod was replaced or restarted for a model change")
        say(f"{len(before)} infer pods swapped models without a restart")

        # The runtime enforces the chart's security settings.
        pod = f"{RELEASE}-infer-0"
        self.assertEqual(kubectl("exec", pod, "--", "id", "-u").strip(), "10001")
        denied = subprocess.run([os.path.join(ROOT, "dev"), "k8s", "kubectl", "-n", NAMESPACE, "exec", pod, "--",
                                 "sh", "-c", "touch /written"], capture_output=True, text=True)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("Read-only file system", denied.stderr)

        expected = {f"{run}-{i % PRODUCERS}-{i}" for run in ("a", "b") for i in range(IMAGES_PER_RUN)}
        ids = self.read_inferences()
        self.assertEqual(len(ids), len(set(ids)), "an image was inferred twice")
        self.assertEqual(set(ids), expected)
        stored = [d["id"] for d in self.db.images.find({}, {"id": 1})]
        self.assertEqual(len(stored), len(set(stored)), "an image was stored twice")
        self.assertEqual(set(stored), expected)
        say(f"{len(expected)} images inferred and stored exactly once")

        say("helm upgrade with no producer: batch (native) runs on everything")
        helm("upgrade", RELEASE, chart, "--reuse-values", "--set", "producer.enabled=false", "--wait",
             "--wait-for-jobs", "--timeout", "300s", timeout=360)
        recount = {}
        for d in self.db.images.find({}, {"producer_id": 1, "image_prediction": 1, "actual_value": 1}):
            total, incorrect = recount.get(d["producer_id"], (0, 0))
            recount[d["producer_id"]] = (total + 1, incorrect + (d["image_prediction"] != d["actual_value"]))
        results = {d["producer_id"]: (d["total"], d["incorrect_count"]) for d in self.db.incorrect_inference_results.find()}
        self.assertEqual(results, recount)
        say(f"incorrect_inference_results equals the recount: {sorted(recount.items())}")

        # Spark's executors are pods that Spark's Kubernetes scheduler started for the Connect
        # server (the driver), under the chart's ServiceAccount and Role.
        executors = kubectl("get", "pods", "-l", "spark-role=executor", "-o",
                            "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{'\\n'}{end}").split("\n")
        executors = [e for e in executors if e.endswith(" Running")]
        self.assertGreaterEqual(len(executors), 1, "no Spark executor pod runs")
        say(f"Spark executor pods: {executors}")
        self.db.incorrect_inference_results.delete_many({})
        say("helm upgrade: batch on Spark")
        helm("upgrade", RELEASE, chart, "--reuse-values", "--set", "batch.engine=spark", "--wait", "--wait-for-jobs",
             "--timeout", "600s", timeout=660)
        results = {d["producer_id"]: (d["total"], d["incorrect_count"]) for d in self.db.incorrect_inference_results.find()}
        self.assertEqual(results, recount, "Spark's counts differ from the native ones")
        say("Spark's counts equal the native ones")

        # No service crashed and came back meanwhile (the Spark stream once did, at every install,
        # while the Spark Connect server started).
        for component in ("infer", "sink", "stream", "spark-connect"):
            for pod in self.pods(component):
                restarts = sum(c["restartCount"] for c in pod["status"].get("containerStatuses", []))
                self.assertEqual(restarts, 0, f"{pod['metadata']['name']} restarted")

        helm("uninstall", RELEASE, "--wait", "--timeout", "120s")
        # Their pods end in their own time (terminationGracePeriodSeconds) after the workloads go;
        # Spark's executors with the driver's pod, which owns them.
        wait_for("every pod of the release gone", lambda: not kubectl("get", "pods", "-o", "name").split(), 180)
        left = kubectl("get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings,pvc", "-o", "name").split()
        left = [r for r in left if r not in ("configmap/kube-root-ca.crt", "serviceaccount/default")]
        self.assertEqual(left, [], "left after helm uninstall")
        say("helm uninstall left nothing of the release")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("pipeline_test.py needs root (the cluster's network namespace)")
    if not os.path.exists(NETNS):
        sys.exit("no cluster: ./dev k8s up first")
    # Kafka and the store listen at the node's address, inside the cluster's namespace.
    if os.environ.get("IOTINFER_K8S_NETNS") != NETNS:
        os.environ["IOTINFER_K8S_NETNS"] = NETNS
        os.execvp("nsenter", ["nsenter", f"--net={NETNS}", sys.executable, *sys.argv])
    unittest.main(verbosity=2)
