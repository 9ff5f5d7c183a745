"""What every `./dev bench NAME` driver shares: machine facts, and rewriting its own section
of BENCHMARKS.md (between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`)."""
import argparse
import importlib.util
import json
import os
import platform
import re

MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model")


def load_trained_model():
    """(model/train.py as a module, model/metrics.json, the trained nn.Module in eval mode)."""
    import torch  # only the drivers that run PyTorch need it

    spec = importlib.util.spec_from_file_location("train", os.path.join(MODEL_DIR, "train.py"))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    metrics = json.load(open(os.path.join(MODEL_DIR, "metrics.json")))
    model = train.FashionCNN(metrics["arch"])
    model.load_state_dict(torch.load(os.path.join(MODEL_DIR, "fmnist-cnn.pt")))
    return train, metrics, model.eval()


def driver_arguments(description):
    """A parser with the flags every driver takes: the binary, the report it rewrites, the
    brokers."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--iotinfer", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    return ap


def cpu_flags():
    """The CPU's flags, as /proc/cpuinfo lists them."""
    info = open("/proc/cpuinfo").read()
    return set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())


def cpu_facts(avx512=True):
    """(model name, MHz, FP32 FMAs per cycle per core), the last with AVX-512 counted only
    where `avx512` allows it (False: the code runs AVX2 at most)."""
    info = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
    mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", info).group(1))
    flags = cpu_flags()
    vendor = re.search(r"vendor_id\s*:\s*(.*)", info).group(1).strip()
    # Two FMA pipes of 8 lanes (AVX2, and AMD Zen 4's double-pumped AVX-512) or of 16 lanes
    # (Intel cores with two AVX-512 FMA units).
    lanes = 16 if (avx512 and "avx512f" in flags and vendor == "GenuineIntel") else 8
    return model, mhz, 2 * lanes if "fma" in flags else 4


def machine_line():
    cpu, mhz, _ = cpu_facts()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"Machine: {cpu}, {os.cpu_count()} cores at {mhz:.0f} MHz, {memory_gib:.0f} GiB, "
            f"{platform.system()} {platform.release()}.")


def write_section(report_path, name, lines):
    """Replaces (or appends) section `name` of the report with `lines`; returns the text."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    section = "\n".join([begin, *lines, end])
    text = (open(report_path).read() if os.path.exists(report_path)
            else "# Benchmarks\n\nWritten by `./dev bench`.\n")
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open(report_path, "w").write(text)
    return section


def delete_topics(brokers, names):
    """Deletes a run's topics: runs repeated for days otherwise fill the broker's disk (tens of
    GB of images). A topic that cannot be deleted is reported, not fatal."""
    from confluent_kafka import KafkaError, KafkaException  # only the drivers that talk to Kafka need it
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    for topic, future in admin.delete_topics(list(names), operation_timeout=30).items():
        try:
            future.result(60)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # one the run never made
                print(f"bench: topic {topic} was not deleted: {e}", flush=True)


def drop_database(mongo, name):
    """Drops a run's database: a full `./dev bench latency` leaves a million documents otherwise,
    and a store holding the last runs' data is not the one the next run is measured on."""
    import pymongo  # only the drivers that talk to a store need it

    try:
        pymongo.MongoClient(mongo).drop_database(name)
    except pymongo.errors.PyMongoError as e:
        print(f"bench: database {name} was not dropped: {e}", flush=True)


def server_name(mongo, backend="SQLite"):
    """The server behind `mongo`; FerretDB does not say its backend, so the caller does."""
    import pymongo  # only the drivers that talk to a store need it

    info = pymongo.MongoClient(mongo).admin.command("buildInfo")
    ferret = info.get("ferretdbVersion") or info.get("ferretdb", {}).get("version")
    return f"FerretDB {ferret} ({backend} backend)" if ferret else f"mongod {info.get('version')}"
