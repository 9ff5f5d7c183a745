#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (committed).

Deterministic: the same files on every run. Files whose names start with "regression-"
(inputs that once crashed a target) are not touched. Needs Pillow (JPEG) and pyarrow (Arrow
IPC), the versions the project pins; PNGs are written here, byte by byte, as Pillow writes no
interlaced or 16-bit colour PNGs:

    python3 -m venv build-fuzz/corpus-venv
    build-fuzz/corpus-venv/bin/pip install pillow==13.0.0 pyarrow==26.0.1
    build-fuzz/corpus-venv/bin/python fuzz/make_corpus.py
"""

import io
import json
import pathlib
import struct
import zlib

import pyarrow as pa
import pyarrow.ipc
from PIL import Image

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
SIDE = 28


# --- PNG -------------------------------------------------------------------------------------

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_row(samples, depth):
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, bits, acc = bytearray(), 0, 0
    for s in samples:
        acc = acc << depth | s
        bits += depth
        if bits == 8:
            out.append(acc)
            bits, acc = 0, 0
    if bits:
        out.append(acc << (8 - bits))
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa_, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa_ <= pb and pa_ <= pc else b if pb <= pc else c


def filtered(rows, bpp):
    """Each row with a filter byte, cycling through the five filter types."""
    out, prev = bytearray(), None
    for n, row in enumerate(rows):
        kind = n % 5
        up = prev or bytes(len(row))
        line = bytearray()
        for i, x in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            upleft = up[i - bpp] if i >= bpp else 0
            predictor = [0, left, up[i], (left + up[i]) // 2, paeth(left, up[i], upleft)][kind]
            line.append((x - predictor) & 0xFF)
        out += bytes([kind]) + line
        prev = row
    return bytes(out)


def png(width, height, colour, depth, pixel, interlace=False, plte=None, trns=None, extra=()):
    """pixel(x, y) -> samples of one pixel (a palette index for colour type 3)."""
    channels = CHANNELS[colour]
    bpp = max(1, channels * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    data = b""
    for x0, y0, dx, dy in passes:
        xs, ys = range(x0, width, dx), range(y0, height, dy)
        if not xs or not ys:
            continue
        rows = [pack_row([s for x in xs for s in pixel(x, y)], depth) for y in ys]
        data += filtered(rows, bpp)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    for kind, body in extra:
        out += chunk(kind, body)
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(data, 9)) + chunk(b"IEND", b"")


def level(x, y, scale=255):
    """A smooth pattern with an edge: compresses well, decodes to something image-like."""
    v = (x * 7 + y * 5 + (60 if (x // 7 + y // 7) % 2 else 0)) % 256
    return v * scale // 255


def pngs():
    g = lambda x, y: [level(x, y)]
    rgb = lambda x, y: [level(x, y), level(y, x), level(x + y, x)]
    palette = bytes(c for i in range(16) for c in (i * 16, 255 - i * 16, (i * 40) % 256))
    text = [(b"tEXt", b"Comment\x00a seed"), (b"zTXt", b"Software\x00\x00" + zlib.compress(b"iotinfer fuzz " * 8))]
    return {
        "gray8.png": png(SIDE, SIDE, 0, 8, g),
        "gray1.png": png(16, 16, 0, 1, lambda x, y: [(x + y) % 2]),
        "gray4-text.png": png(SIDE, SIDE, 0, 4, lambda x, y: [level(x, y, 15)], extra=text),
        "gray16.png": png(SIDE, SIDE, 0, 16, lambda x, y: [level(x, y, 65535)]),
        "gray8-trns.png": png(SIDE, SIDE, 0, 8, g, trns=struct.pack(">H", 0)),
        "gray-alpha8.png": png(SIDE, SIDE, 4, 8, lambda x, y: [level(x, y), 255 - level(y, x)]),
        "gray-alpha16.png": png(12, 12, 4, 16, lambda x, y: [level(x, y, 65535), 65535 - level(y, x, 65535)]),
        "rgb8.png": png(SIDE, SIDE, 2, 8, rgb),
        "rgb16.png": png(12, 12, 2, 16, lambda x, y: [s * 257 for s in rgb(x, y)]),
        "rgb8-trns.png": png(SIDE, SIDE, 2, 8, rgb, trns=struct.pack(">HHH", 0, 255, 0)),
        "rgba8.png": png(SIDE, SIDE, 6, 8, lambda x, y: rgb(x, y) + [level(x * 3, y)]),
        "rgba16.png": png(8, 8, 6, 16, lambda x, y: [s * 257 for s in rgb(x, y) + [level(x * 3, y)]]),
        "palette8-trns.png": png(SIDE, SIDE, 3, 8, lambda x, y: [level(x, y, 15)], plte=palette, trns=bytes(range(0, 256, 32))),
        "palette2.png": png(SIDE, SIDE, 3, 2, lambda x, y: [(x // 7 + y // 7) % 4], plte=palette[:12]),
        "adam7-gray8.png": png(SIDE, SIDE, 0, 8, g, interlace=True),
        "adam7-rgb8.png": png(SIDE, SIDE, 2, 8, rgb, interlace=True),
        "adam7-palette4.png": png(13, 11, 3, 4, lambda x, y: [(x + 2 * y) % 16], interlace=True, plte=palette),
        "adam7-rgba16.png": png(9, 7, 6, 16, lambda x, y: [s * 257 for s in rgb(x, y) + [level(y, x)]], interlace=True),
    }


# --- JPEG ------------------------------------------------------------------------------------


def pil_image(mode, side=SIDE):
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    data = bytes(level(x * (c + 1), y + 9 * c) for y in range(side) for x in range(side) for c in range(channels))
    return Image.frombytes(mode, (side, side), data)


def jpeg(mode, **options):
    out = io.BytesIO()
    pil_image(mode, options.pop("side", SIDE)).save(out, "JPEG", quality=options.pop("quality", 90), **options)
    return out.getvalue()


def jpegs():
    return {
        "baseline-rgb.jpg": jpeg("RGB"),
        "baseline-rgb-444.jpg": jpeg("RGB", subsampling=0),
        "baseline-rgb-restarts.jpg": jpeg("RGB", restart_marker_rows=1, side=32),
        "optimized-rgb.jpg": jpeg("RGB", optimize=True, quality=60),
        "progressive-rgb.jpg": jpeg("RGB", progressive=True),
        "baseline-gray.jpg": jpeg("L"),
        "progressive-gray.jpg": jpeg("L", progressive=True),
        "cmyk.jpg": jpeg("CMYK", side=8),  # refused: an unsupported colour space
    }


# --- images messages -------------------------------------------------------------------------

HEADER_BITS = {"id": 0, "producer_id": 1, "content-type": 2, "shape": 3, "label": 4, "produced-at": 5, "key": 6}
CONTENT_TYPES = {"image/png": 0, "image/jpeg": 1, "application/x-raw-u8": 2}


def fdp_string(text):
    """As FuzzedDataProvider::ConsumeRandomLengthString reads it back."""
    return text.replace(b"\\", b"\\\\") + b"\\;"


def message(value, content_type, extra=None, **headers):
    """The layout fuzz/image_message.cc reads; headers by name ('-' for '_'), key as key=."""
    fields = {"producer_id": "3", "key": "3", "id": "run-1-7"} | {k.replace("_at", "-at"): v for k, v in headers.items()}
    fields = {k: v for k, v in fields.items() if v is not None}
    present = sum(1 << HEADER_BITS[name] for name in fields) | (1 << HEADER_BITS["content-type"])
    out = b""
    if extra is not None:
        present |= 1 << 7
        out += fdp_string(extra[0].encode()) + fdp_string(extra[1].encode())
    selector = CONTENT_TYPES.get(content_type, 3)
    for name in ["id", "producer_id", "content-type", "shape", "label", "produced-at", "key"]:
        if name == "content-type":
            if selector == 3:
                out += fdp_string(content_type.encode())
        elif name in fields:
            out += fdp_string(fields[name].encode())
    return out + value + bytes([selector, present])


def messages(png_seeds, jpeg_seeds):
    raw = bytes(level(x, y) for y in range(SIDE) for x in range(SIDE))
    return {
        "png-gray.msg": message(png_seeds["gray8.png"], "image/png", shape="28x28x1", label="Sneaker",
                                produced_at="1700000000000000"),
        "png-rgb.msg": message(png_seeds["rgb8.png"], "image/png", shape="28x28x3"),
        "png-rgba.msg": message(png_seeds["rgba8.png"], "image/png", label="Bag"),
        "png-palette.msg": message(png_seeds["palette8-trns.png"], "image/png", shape="28x28x4", key=None),
        "png-adam7.msg": message(png_seeds["adam7-rgb8.png"], "image/png", label="T-shirt/top"),
        "png-gray16.msg": message(png_seeds["gray16.png"], "image/png", shape="28x28x1"),
        "png-gray-alpha.msg": message(png_seeds["gray-alpha8.png"], "image/png", produced_at="0"),
        "jpeg-rgb.msg": message(jpeg_seeds["baseline-rgb.jpg"], "image/jpeg", shape="28x28x3", label="Coat"),
        "jpeg-progressive.msg": message(jpeg_seeds["progressive-rgb.jpg"], "image/jpeg"),
        "jpeg-gray.msg": message(jpeg_seeds["baseline-gray.jpg"], "image/jpeg", shape="28x28x1", producer_id="12",
                                 key="12", id="device-12\\image"),
        "raw-28x28x1.msg": message(raw, "application/x-raw-u8", shape="28x28x1", label="Ankle boot",
                                   produced_at="1700000000000001"),
        "raw-4x4x3.msg": message(raw[:48], "application/x-raw-u8", shape="4x4x3", key=None),
        "raw-extra-header.msg": message(raw, "application/x-raw-u8", extra=("id", "shadowing-id"), shape="28x28x1"),
        "unknown-type.msg": message(raw[:16], "image/gif", shape="4x4x1"),
    }


# --- inference records -----------------------------------------------------------------------


def records():
    full = {"id": "run-3-17", "image_prediction": "Shirt", "actual_value": "T-shirt/top", "producer_id": 3,
            "confidence": 0.91, "model": "fmnist-cnn-f717b7aa", "produced_at": 1700000000000000,
            "inferred_at": 1700000000004000}
    dumps = lambda value: json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return {
        "full.json": dumps(full),
        "unlabelled.json": dumps(full | {"actual_value": None, "produced_at": None}),
        "original-four.json": dumps({k: full[k] for k in ["id", "image_prediction", "actual_value", "producer_id"]}),
        "unknown-fields.json": dumps(full | {"future": [1, 2, {"x": None}], "flag": True}),
        "escapes.json": b'{"id":"r\\u00e9\\ud83d\\ude00\\n","image_prediction":"Bag","actual_value":"Bag",'
                        b'"producer_id":2147483647,"confidence":1e-3,"model":null,"inferred_at":-1}',
        "pretty.json": json.dumps(full, indent=2).encode(),
        "wrong-type.json": dumps(full | {"producer_id": "3"}),  # refused
    }


# --- Kafka properties files ------------------------------------------------------------------


def properties():
    return {
        "sasl-ssl.properties": b"""# SASL over TLS, as mounted from a Kubernetes Secret
! a comment in the Java style
bootstrap.servers=broker-0.kafka:9093
security.protocol = SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username=iotinfer
sasl.password=hunter2 with spaces
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="iotinfer" password="hunter2";

ssl.ca.location=/etc/kafka/ca.pem
ssl.certificate.location=/etc/kafka/client.pem
ssl.key.location=/etc/kafka/client.key
ssl.key.password=changeit
ssl.key.pem=-----BEGIN PRIVATE KEY-----MIIB-----END PRIVATE KEY-----
consumer.fetch.wait.max.ms=10
producer.linger.ms=20
""",
        "crlf-oauth.properties": b"sasl.mechanism=OAUTHBEARER\r\nsasl.oauthbearer.client.id=iot\r\n"
                                 b"sasl.oauthbearer.client.secret=s3cr3t=value\r\n\t  \r\n"
                                 b"sasl.oauthbearer.token.endpoint.url=https://idp/token\r\nempty.value=\r\n",
        "malformed.properties": b"# refused at line 3\nclient.id=iotinfer\nno equals sign here\n",
    }


# --- Arrow IPC streams -----------------------------------------------------------------------


def stream(table, max_rows=None, compression=None):
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=max_rows):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def streams(*parts):
    """The layout fuzz/arrow.cc reads: the streams, the lengths of all but the last, the count."""
    lengths = b"".join(struct.pack("<I", len(p)) for p in reversed(parts[:-1]))
    return b"".join(parts) + lengths + bytes([len(parts) - 1])


def arrows():
    results = pa.table({
        "producer_id": pa.array([0, 1, 2, None], pa.int64()),
        "incorrect": pa.array([3, 0, None, 7], pa.int64()),
        "accuracy": pa.array([0.5, 1.0, None, float("nan")], pa.float64()),
        "labelled": pa.array([True, False, None, True]),
        "label": pa.array(["Bag", "Shirt", None, "T-shirt/top"]),
        "window_start": pa.array([1700000000000000, None, 0, -1], pa.timestamp("us", tz="UTC")),
        "nothing": pa.nulls(4),
        "no_values": pa.array([None] * 4, pa.int64()),
    })
    narrow = pa.table({
        "i8": pa.array([-128, 127], pa.int8()), "i16": pa.array([-1, 300], pa.int16()),
        "i32": pa.array([2147483647, None], pa.int32()), "f32": pa.array([0.25, None], pa.float32()),
        "ls": pa.array(["large", ""], pa.large_string()), "ms": pa.array([1, 2], pa.timestamp("ms")),
    })
    empty = results.schema.empty_table()
    return {
        "results.arrow": streams(stream(results)),
        "results-batches.arrow": streams(stream(results, max_rows=1)),
        "two-streams.arrow": streams(stream(results.slice(0, 2)), stream(results.slice(2))),
        "three-streams.arrow": streams(stream(results.slice(0, 1)), stream(empty), stream(results.slice(1))),
        "narrow-types.arrow": streams(stream(narrow)),
        "zstd.arrow": streams(stream(results, compression="zstd")),
        "lz4.arrow": streams(stream(narrow, compression="lz4")),
        # refused: types a table cannot hold, and streams that disagree on their columns
        "decimal.arrow": streams(stream(pa.table({"d": pa.array([1, 2], pa.decimal128(10, 2))}))),
        "dictionary.arrow": streams(stream(pa.table({"s": pa.array(["a", "b", "a"]).dictionary_encode()}))),
        "list.arrow": streams(stream(pa.table({"l": pa.array([[1], [2, 3]])}))),
        "mismatch.arrow": streams(stream(results.slice(0, 1)), stream(narrow)),
    }


def main():
    png_seeds, jpeg_seeds = pngs(), jpegs()
    corpora = {
        "png": png_seeds,
        "jpeg": jpeg_seeds,
        "image_message": messages(png_seeds, jpeg_seeds),
        "inference_record": records(),
        "kafka_config": properties(),
        "arrow": arrows(),
    }
    for target, seeds in corpora.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if not old.name.startswith("regression-"):
                old.unlink()
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds, largest {max(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
