"""`iotinfer batch` agrees with an independent pymongo computation, on every engine.

Documents are inserted with pymongo exactly as the original Python consumer wrote them
(random producers and labels, some unlabelled). The expected per-producer counts are computed
here in Python from the documents read back; `iotinfer batch --engine native`, `--engine mongo`
and `--engine spark` (Spark writes the results itself) must each leave
`incorrect_inference_results` equal to them, with `producer_id` (int32) and `incorrect_count`
(int64) first, as the original Spark job wrote them.
The files are read with independent parsers: results.csv with the csv module, the SVG charts
with an XML parser, the PNG header for the image size.

Run by ctest against the servers the `mongo` and `spark` fixtures start:
  batch_interop_test.py --iotinfer build/iotinfer [--mongo mongodb://127.0.0.1:27017]
"""

import argparse
import collections
import csv
import datetime
import os
import random
import struct
import subprocess
import sys
import tempfile
import unittest
import uuid
import xml.etree.ElementTree as ElementTree

import pymongo
from bson.int64 import Int64

ARGS = None
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


class BatchInteropTest(unittest.TestCase):
    def setUp(self):
        self.database = f"batch_interop_{uuid.uuid4().hex[:8]}"
        self.client = pymongo.MongoClient(ARGS.mongo, serverSelectionTimeoutMS=5000)
        self.db = self.client[self.database]
        rng = random.Random(7)
        docs = []
        for i in range(4000):
            producer = rng.randrange(9)
            actual = rng.choice(CLASSES)
            predicted = actual if rng.random() > 0.05 * producer else rng.choice(CLASSES)
            docs.append({"id": f"py-{i}", "image_prediction": predicted,
                         "actual_value": None if i % 17 == 0 else actual, "producer_id": producer,
                         "confidence": 0.5, "model": "python",
                         "inferred_at": datetime.datetime(2026, 11, 25)})
        self.db["images"].insert_many(docs)

    def tearDown(self):
        self.client.drop_database(self.database)
        self.client.close()

    def expected(self):
        counts = collections.defaultdict(lambda: {"incorrect_count": 0, "total": 0, "unlabelled": 0})
        for doc in self.db["images"].find({}, {"_id": 0}):
            c = counts[doc["producer_id"]]
            c["total"] += 1
            if doc["actual_value"] is None:
                c["unlabelled"] += 1
            elif doc["image_prediction"] != doc["actual_value"]:
                c["incorrect_count"] += 1
        return {p: c for p, c in counts.items()}

    def run_batch(self, engine, out):
        result = subprocess.run([ARGS.iotinfer, "batch", "--store", ARGS.mongo, "--db", self.database,
                                 "--engine", engine, "--out", out], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_every_engine_matches_pymongo(self):
        expected = self.expected()
        self.assertEqual(len(expected), 9)
        for engine in ("native", "mongo", "spark"):
            with self.subTest(engine=engine), tempfile.TemporaryDirectory() as out:
                stdout = self.run_batch(engine, out)
                self.assertIn("incorrect_inference_results replaced", stdout)
                docs = list(self.db["incorrect_inference_results"].find({}, {"_id": 0}).sort("producer_id"))
                self.assertEqual([d["producer_id"] for d in docs], sorted(expected))
                for doc in docs:
                    self.assertEqual(list(doc)[:2], ["producer_id", "incorrect_count"])
                    self.assertIs(type(doc["producer_id"]), int, "producer_id must be BSON int32")
                    self.assertIs(type(doc["incorrect_count"]), Int64, "counts are BSON int64, as Spark's count()")
                    want = expected[doc["producer_id"]]
                    for field in ("incorrect_count", "total", "unlabelled"):
                        self.assertEqual(doc[field], want[field], f"{engine} {field} of {doc['producer_id']}")
                    labelled = want["total"] - want["unlabelled"]
                    self.assertAlmostEqual(doc["error_rate"], want["incorrect_count"] / labelled, places=12)
                    self.assertIsInstance(doc["computed_at"], datetime.datetime)

                with open(os.path.join(out, "results.csv"), newline="") as f:
                    rows = list(csv.DictReader(f))
                self.assertEqual([int(r["producer_id"]) for r in rows], sorted(expected))
                for row in rows:
                    want = expected[int(row["producer_id"])]
                    self.assertEqual(int(row["incorrect_count"]), want["incorrect_count"])
                    self.assertEqual(int(row["total"]), want["total"])

                with open(os.path.join(out, "confusion.csv"), newline="") as f:
                    matrix = list(csv.reader(f))
                self.assertEqual(matrix[0][1:], CLASSES)
                self.assertEqual(sum(int(v) for row in matrix[1:] for v in row[1:]),
                                 sum(c["total"] - c["unlabelled"] for c in expected.values()))

                for name, size in (("results", (900, 540)), ("confusion", (900, 760))):
                    self.assertEqual(png_size(os.path.join(out, f"{name}.png")), size)
                    svg = ElementTree.parse(os.path.join(out, f"{name}.svg")).getroot()
                    self.assertEqual(svg.tag, "{http://www.w3.org/2000/svg}svg")
                    self.assertEqual((svg.get("width"), svg.get("height")), (f"{size[0]}px", f"{size[1]}px"))

    def test_unknown_engine_is_a_usage_error(self):
        result = subprocess.run([ARGS.iotinfer, "batch", "--store", ARGS.mongo, "--db", self.database,
                                 "--engine", "hadoop", "--out", ""], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("unknown engine 'hadoop'", result.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iotinfer", required=True)
    parser.add_argument("--mongo", default="mongodb://127.0.0.1:27017")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)
