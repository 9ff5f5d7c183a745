"""The baseline for `./dev bench pipeline`: inference the way the original Python system did
it. A Kafka consumer takes one image at a time, decodes it, runs the PyTorch model on it
alone and produces the result; offsets are auto-committed (no transactions, no batching).
It runs the same trained model as iotinfer (model/fmnist-cnn.pt) and writes the same JSON.
"""
import argparse
import io
import json
import signal
import time

import numpy as np
import torch
from confluent_kafka import Consumer, Producer
from PIL import Image

from benchmarks import load_trained_model

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    args = ap.parse_args()
    _, _, model = load_trained_model()
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": args.group, "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": args.brokers})
    consumer.subscribe([args.input])
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        headers = {k: v.decode() for k, v in (message.headers() or [])}
        pixels = np.asarray(Image.open(io.BytesIO(message.value())).convert("L"), dtype=np.float32)
        with torch.no_grad():
            probabilities = torch.softmax(model(torch.from_numpy(pixels)[None, None]), dim=1)[0]
        label = int(probabilities.argmax())
        producer.produce(args.output, key=message.key(), value=json.dumps({
            "id": headers["id"],
            "image_prediction": CLASSES[label],
            "actual_value": headers.get("label"),
            "producer_id": int(headers["producer_id"]),
            "confidence": float(probabilities[label]),
            "model": "pytorch-eager",
            "produced_at": int(headers["produced-at"]),
            "inferred_at": time.time_ns() // 1000,
        }))
        producer.poll(0)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
