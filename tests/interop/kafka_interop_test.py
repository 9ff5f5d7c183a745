"""Python clients speak iotinfer's Kafka wire formats (docs/design.md).

A device written in Python (confluent-kafka + Pillow) sends PNG images with the documented
headers; `iotinfer infer` classifies them; a Python consumer reads `inferences` with
read_committed and parses each record. The expected predictions are PyTorch's, committed
with the model (model/test-predictions.u8), so nothing here trusts the C++ side.

Run by ctest against the broker the `kafka` fixture starts:
  kafka_interop_test.py --iotinfer build/iotinfer [--brokers 127.0.0.1:9092]
"""

import argparse
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import unittest
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ARGS = None


def load_test_set(count):
    with gzip.open(f"{DATA}/t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{DATA}/t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    with open(f"{ROOT}/model/test-predictions.u8", "rb") as f:
        predictions = np.frombuffer(f.read(), np.uint8)
    return images[:count], labels[:count], predictions[:count]


def png(image):
    out = io.BytesIO()
    Image.fromarray(image, mode="L").save(out, format="PNG")
    return out.getvalue()


def read_all(topic, expected, settle_s=2.0, timeout_s=90.0):
    """Every record of `topic` (read_committed), going on `settle_s` past `expected` so a duplicate shows."""
    consumer = Consumer({
        "bootstrap.servers": ARGS.brokers,
        "group.id": f"interop-reader-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    records, deadline, settle_until = [], time.monotonic() + timeout_s, None
    while time.monotonic() < (settle_until or deadline):
        if settle_until is None and len(records) >= expected:
            settle_until = time.monotonic() + settle_s
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            raise AssertionError(f"consumer error: {message.error()}")
        records.append(message)
    consumer.close()
    return records


class KafkaInteropTest(unittest.TestCase):
    def test_python_device_to_iotinfer_to_python_consumer(self):
        count, run = 120, f"py{uuid.uuid4().hex[:8]}"
        images_topic, inferences_topic, dlq_topic = (f"interop-{name}-{run}" for name in ("images", "inferences", "dlq"))
        admin = AdminClient({"bootstrap.servers": ARGS.brokers})
        for future in admin.create_topics([NewTopic(t, 3, 1) for t in (images_topic, inferences_topic, dlq_topic)]).values():
            future.result(30)

        images, labels, predictions = load_test_set(count)
        producer = Producer({"bootstrap.servers": ARGS.brokers, "enable.idempotence": True})
        failures = []
        for i in range(count):
            producer_id = i % 4
            producer.produce(
                images_topic,
                key=str(producer_id),
                value=png(images[i]),
                headers=[
                    ("id", f"{run}-{producer_id}-{i}"),
                    ("producer_id", str(producer_id)),
                    ("content-type", "image/png"),
                    ("label", CLASSES[labels[i]]),
                    ("produced-at", str(time.time_ns() // 1000)),
                ],
                on_delivery=lambda err, _msg: err and failures.append(err),
            )
            producer.poll(0)
        self.assertEqual(producer.flush(30), 0)
        self.assertEqual(failures, [])

        infer = subprocess.Popen([
            ARGS.iotinfer, "infer", "--brokers", ARGS.brokers, "--group", f"interop-{run}",
            "--input-topic", images_topic, "--output-topic", inferences_topic, "--dlq-topic", dlq_topic,
            "--log-every-ms", "0",
        ])
        try:
            records = read_all(inferences_topic, count)
        finally:
            infer.send_signal(signal.SIGTERM)
            self.assertEqual(infer.wait(60), 0, "infer must exit 0 on SIGTERM")

        self.assertEqual(len(records), count, "exactly one inference per image")
        seen = set()
        for message in records:
            record = json.loads(message.value())
            self.assertEqual(list(record)[:4], ["id", "image_prediction", "actual_value", "producer_id"])
            i = int(record["id"].rsplit("-", 1)[1])
            self.assertNotIn(i, seen)
            seen.add(i)
            self.assertIsInstance(record["producer_id"], int)
            self.assertEqual(record["producer_id"], i % 4)
            self.assertEqual(message.key().decode(), str(i % 4))
            self.assertEqual(record["actual_value"], CLASSES[labels[i]])
            self.assertEqual(record["image_prediction"], CLASSES[predictions[i]], f"image {i}")
            self.assertTrue(0.0 <= record["confidence"] <= 1.0)
            self.assertGreaterEqual(record["inferred_at"], record["produced_at"])
        self.assertEqual(seen, set(range(count)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)
