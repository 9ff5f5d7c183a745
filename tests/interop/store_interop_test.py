"""The documents `iotinfer sink` writes look, to pymongo, exactly like the original system's.

The original Python consumer wrote `images` documents with pymongo, and its Spark job read
them back; both saw `_id` (ObjectId), then `id`, `image_prediction`, `actual_value` (str),
`producer_id` (BSON int32). Here a Python producer (confluent-kafka) sends inference
records to a topic, `iotinfer sink` stores them, and pymongo reads the documents and
checks names, order and BSON types field by field, the unique index on `id`, and that
SIGTERM stops the sink with exit code 0.

Run by ctest against the servers the `kafka` and `mongo` fixtures start:
  store_interop_test.py --iotinfer build/iotinfer [--brokers 127.0.0.1:9092] [--mongo mongodb://127.0.0.1:27017]
"""

import argparse
import datetime
import json
import signal
import subprocess
import sys
import time
import unittest
import uuid

import bson
import pymongo
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ARGS = None
SCHEMA = ["_id", "id", "image_prediction", "actual_value", "producer_id",
          "confidence", "model", "produced_at", "inferred_at", "stored_at", "source"]


def record(i):
    return {"id": f"py-{i}", "image_prediction": "Sneaker" if i % 4 else "Sandal",
            "actual_value": None if i % 10 == 0 else "Sneaker", "producer_id": i % 5,
            "confidence": 0.75, "model": "fmnist-cnn-python", "produced_at": 1_700_000_000_123_456 + i,
            "inferred_at": 1_700_000_000_223_456 + i}


class StoreInteropTest(unittest.TestCase):
    def test_documents_have_the_original_schema(self):
        run = uuid.uuid4().hex[:8]
        topic, dlq, database = f"interop-inferences-{run}", f"interop-dlq-{run}", f"interop_{run}"
        admin = AdminClient({"bootstrap.servers": ARGS.brokers})
        for future in admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq, 3, 1)]).values():
            future.result(30)
        count = 120
        producer = Producer({"bootstrap.servers": ARGS.brokers, "enable.idempotence": True})
        for i in range(count):
            r = record(i)
            producer.produce(topic, key=str(r["producer_id"]), value=json.dumps(r))
        self.assertEqual(producer.flush(30), 0)

        sink = subprocess.Popen([ARGS.iotinfer, "sink", "--brokers", ARGS.brokers, "--store", ARGS.mongo,
                                 "--db", database, "--input-topic", topic, "--dlq-topic", dlq,
                                 "--accepted-topic", f"interop-accepted-{run}",
                                 "--group", f"interop-sink-{run}", "--flush-ms", "20", "--log-every-ms", "0"])
        client = pymongo.MongoClient(ARGS.mongo, serverSelectionTimeoutMS=5000)
        images = client[database]["images"]
        try:
            deadline = time.time() + 90
            while images.count_documents({}) < count and time.time() < deadline:
                time.sleep(0.2)
        finally:
            sink.send_signal(signal.SIGTERM)
            self.assertEqual(sink.wait(60), 0, "SIGTERM must flush, commit and exit 0")

        # pymongo decodes BSON int32 as int and int64 as bson.Int64, dates as datetime: the
        # Python types below are the BSON types.
        docs = list(images.find({}))
        self.assertEqual(len(docs), count)
        for decoded in docs:
            self.assertEqual(list(decoded.keys()), SCHEMA)
            want = record(int(decoded["id"].split("-")[1]))
            self.assertIsInstance(decoded["_id"], bson.ObjectId)
            self.assertRegex(decoded["source"], rf"^{topic}/[0-2]/[0-9]+$")
            for field in ("id", "image_prediction", "model"):
                self.assertIs(type(decoded[field]), str)
                self.assertEqual(decoded[field], want[field])
            self.assertEqual(decoded["actual_value"], want["actual_value"])
            self.assertIn(type(decoded["actual_value"]), (str, type(None)))
            self.assertIs(type(decoded["producer_id"]), int, "producer_id must be BSON int32")
            self.assertEqual(decoded["producer_id"], want["producer_id"])
            self.assertIs(type(decoded["confidence"]), float)
            for field in ("produced_at", "inferred_at"):
                self.assertIs(type(decoded[field]), datetime.datetime, f"{field} must be a BSON date")
                micros = want[field] // 1000 * 1000
                self.assertEqual(decoded[field], datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=micros))
            self.assertIs(type(decoded["stored_at"]), datetime.datetime)

        unique = [info for info in images.index_information().values() if info["key"] == [("id", 1)]]
        self.assertEqual(len(unique), 1)
        self.assertTrue(unique[0].get("unique"))
        client.drop_database(database)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)
