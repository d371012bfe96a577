"""Load test of `skewless serve`: throughput, p50 and p99 over REST and gRPC, beside the graph itself.

    .venv/bin/python benchmarks/serving_load.py out/demo/model/serving
    .venv/bin/python benchmarks/serving_load.py out/demo/model/serving --requests 2000 --clients 1 4 16

Starts `skewless serve --port 0 --grpc-port 0` on the model (loopback only), then for 1, 4 and 16
concurrent clients (threads, each with its own kept-alive connection or gRPC channel) sends
single-instance requests (``--requests`` in all, at most ``--seconds`` each run) and batches of
1,000 instances (``--batch-requests`` in all), over REST and over gRPC ``Predict`` (raw instances,
one tensor per feature). Instances are raw rows of the bundled taxi sample, without the label.
Every answer must be a 200 (OK); errors are counted and printed. The limit row is the model's
``serving_default`` called in-process on the same requests' tf.Examples (no decoding, no network).
The clients share the machine's cores with the server: on 2 cores they take about one.
``srv ms`` is the server process's CPU time per request (Linux: from ``/proc``), which says what a
request costs the server whatever the clients cost.
"""

import argparse
import csv
import http.client
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def sample_instances(schema_types: dict[str, str], limit: int = 1000) -> list[dict]:
    """Raw taxi rows as JSON clients send them: numbers as numbers, empty cells left out, no label."""
    rows = []
    with open(ROOT / "schemas" / "taxi" / "data.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            instance = {}
            for name, text in row.items():
                if text == "" or name == "tips":
                    continue
                kind = schema_types[name]
                instance[name] = int(text) if kind == "INT" else float(text) if kind == "FLOAT" else text
            rows.append(instance)
            if len(rows) == limit:
                break
    return rows


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, int, int]:
    skewless = os.path.join(os.path.dirname(sys.executable), "skewless")
    command = [skewless, "serve", "--model", model, "--port", "0", "--grpc-port", "0", *extra]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        found = re.search(r"http://[\d.]+:(\d+)/\S+ and grpc://[\d.]+:(\d+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep draining
            return server, int(found.group(1)), int(found.group(2))
    raise SystemExit(f"skewless serve did not start: exit {server.wait()}")


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def cpu_seconds(pid: int | None) -> float | None:
    """A process's CPU time so far (user and system; None where ``/proc`` is not there)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(clients: int, requests: int, seconds: float, send, server_pid: int | None = None) -> dict:
    """``clients`` threads share ``requests`` calls of ``send(client, i)`` (-> ok) for at most
    ``seconds``; with ``server_pid``, the server's CPU milliseconds per request too."""
    latencies, errors = [], [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(number: int) -> None:
        state = {}
        mine = []
        for i in range(number, requests, clients):
            if time.perf_counter() > stop_at:
                break
            started = time.perf_counter()
            ok = send(state, i)
            mine.append(time.perf_counter() - started)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    server_cpu = cpu_seconds(server_pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    server_cpu = None if server_cpu is None else cpu_seconds(server_pid) - server_cpu
    latencies.sort()
    return {
        "server_ms": None if server_cpu is None or not latencies else server_cpu / len(latencies) * 1e3,
        "requests": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors[0],
    }


def rest_sender(port: int, bodies: list[bytes]):
    def send(state: dict, i: int) -> bool:
        connection = state.get("connection")
        if connection is None:
            connection = state["connection"] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "POST", "/v1/models/default:predict", bodies[i % len(bodies)], {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
        return response.status == 200

    return send


def grpc_sender(port: int, requests: list):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    def send(state: dict, i: int) -> bool:
        stub = state.get("stub")
        if stub is None:
            # a connection of its own, as each REST client has (channels with the same options
            # otherwise share one connection through gRPC's global subchannel pool)
            options = [("grpc.max_receive_message_length", 1 << 30), ("grpc.use_local_subchannel_pool", 1)]
            channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
            stub = state["stub"] = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(requests[i % len(requests)], timeout=60)
            return True
        except grpc.RpcError:
            return False

    return send


def predict_request(instances: list[dict], names: list[str]):
    """A gRPC PredictRequest of raw instances: one tensor per feature (missing: the type's empty value is
    not possible in a dense tensor, so batches carry only the features every instance has)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    for name in names:
        request.inputs[name].CopyFrom(tf.make_tensor_proto([instance[name] for instance in instances]))
    return request


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a served model directory (model/serving/ or serving_model/)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2000, help="single-instance requests a run")
    parser.add_argument("--batch-requests", type=int, default=40, help="requests of 1,000 instances a run")
    parser.add_argument("--seconds", type=float, default=30, help="a run stops after this long")
    parser.add_argument("--server-args", default="", help="extra `skewless serve` flags, e.g. '--workers 1'")
    args = parser.parse_args(argv)

    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    from pipelines.prepare import export
    from pipelines.serving.model import ServingModel

    schema = export.raw_schema_of(args.model)
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    instances = sample_instances(types)
    common = [n for n in types if all(n in i for i in instances)]
    dense = [{n: i[n] for n in common} for i in instances]  # for gRPC columns: features every row has
    single_bodies = [json.dumps({"instances": [i]}).encode() for i in instances]
    batch_body = [json.dumps({"instances": instances}).encode()]
    single_grpc = [predict_request([i], list(i)) for i in instances]
    batch_grpc = [predict_request(dense, common)]

    model = ServingModel(args.model)
    examples = [model.examples([i])[0] for i in instances]
    single_examples = [tf.constant([e]) for e in examples]
    all_examples = tf.constant(examples)
    signature = model._signature

    def graph_single(state, i):
        signature(examples=single_examples[i % len(single_examples)])
        return True

    def graph_batch(state, i):
        signature(examples=all_examples)
        return True

    def decode_batch(state, i):
        model.examples(instances)
        return True

    for _ in range(50):
        graph_single({}, 0)
    server, rest_port, grpc_port = start_server(args.model, args.server_args.split())
    try:
        rest_send = rest_sender(rest_port, single_bodies)
        grpc_send = grpc_sender(grpc_port, single_grpc)
        run_clients(4, 200, 10, rest_send)  # warm-up
        run_clients(4, 200, 10, grpc_send)
        rows = []

        def measure(path, batch, clients, requests, send, pid=server.pid):
            rows.append((path, batch, clients, run_clients(clients, requests, args.seconds, send, pid)))

        for clients in args.clients:
            measure("graph in-process", "1", clients, args.requests, graph_single, None)
            measure("REST", "1", clients, args.requests, rest_send)
            measure("gRPC", "1", clients, args.requests, grpc_send)
        for clients in args.clients:
            n = args.batch_requests
            measure("graph in-process", "1000", clients, n, graph_batch, None)
            if clients == args.clients[0]:
                measure("decode dicts", "1000", 1, n, decode_batch, None)
            measure("REST", "1000", clients, n, rest_sender(rest_port, batch_body))
            measure("gRPC", "1000", clients, n, grpc_sender(grpc_port, batch_grpc))
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(
        f"{'path':<18}{'batch':>6}{'clients':>8}{'requests':>9}{'req/s':>9}{'rows/s':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}{'srv ms':>8}"
    )
    for path, batch, clients, r in rows:
        rows_per_second = r["per_second"] * int(batch)
        server_ms = "" if r["server_ms"] is None else f"{r['server_ms']:.2f}"
        print(
            f"{path:<18}{batch:>6}{clients:>8}{r['requests']:>9}{r['per_second']:>9.0f}{rows_per_second:>10.0f}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>7}{server_ms:>8}"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
