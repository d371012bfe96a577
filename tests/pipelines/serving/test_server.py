"""`skewless serve`: TF Serving's REST and gRPC APIs over the trained model, batched, drained on SIGTERM."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from pipelines.serving.model import ServingModel
from pipelines.serving.server import Server, ServerOptions
from tests.pipelines.serving.conftest import REQUIRED

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def model(trained):
    return ServingModel(str(trained / "serving"))


@pytest.fixture(scope="module")
def running(model):
    options = ServerOptions(port=0, grpc_port=0, model_name="taxi", batch_timeout_ms=2)
    server = Server(model, options).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(running):
    return f"http://127.0.0.1:{running.rest_port}"


def _call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_rest_status_and_predict_like_tf_serving(server):
    assert _call(f"{server}/v1/models/taxi") == (
        200,
        {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )
    status, body = _call(f"{server}/v1/models/taxi:predict", json.dumps({"instances": [REQUIRED, REQUIRED]}).encode())
    assert status == 200 and len(body["predictions"]) == 2
    assert body["predictions"][0] == body["predictions"][1] and 0 <= body["predictions"][0] <= 1
    # TF Serving's columnar format: a list of values per feature in, a list per output out
    rows = [REQUIRED, dict(REQUIRED, trip_miles="7.5", payment_type="Cash"), dict(REQUIRED, trip_start_hour="3")]
    columns = {name: [row.get(name) for row in rows] for name in rows[0]}
    status, by_rows = _call(f"{server}/v1/models/taxi:predict", json.dumps({"instances": rows}).encode())
    status, by_columns = _call(f"{server}/v1/models/taxi:predict", json.dumps({"inputs": columns}).encode())
    assert status == 200 and by_columns == {"outputs": by_rows["predictions"]} and len(set(by_columns["outputs"])) > 1
    named = json.dumps({"signature_name": "serving_default", "instances": rows}).encode()
    assert _call(f"{server}/v1/models/taxi:predict", named) == (200, by_rows)


@pytest.mark.parametrize(
    "path, body, status, error",
    [
        ("/v1/models/taxi:predict", b"{not json", 400, "request body is not JSON"),
        ("/v1/models/taxi:predict", b"{}", 400, "request must be a JSON object with 'instances' (rows) or 'inputs'"),
        ("/v1/models/taxi:predict", b'{"inputs": []}', 400, "'inputs' must be an object of lists, one value per"),
        (
            "/v1/models/taxi:predict",
            b'{"inputs": {"a": [1], "b": [1, 2]}}',
            400,
            "'inputs' lists have different numbers",
        ),
        ("/v1/models/taxi:predict", b'{"inputs": {"trip_miles": ["far"]}}', 400, "instance 0, feature 'trip_miles'"),
        ("/v1/models/taxi:predict", b'{"instances": []}', 400, "'instances' must be a non-empty list of objects"),
        ("/v1/models/taxi:predict", b'{"instances": [{"trip_miles": "far"}]}', 400, "instance 0, feature 'trip_miles'"),
        ("/v1/models/taxi:predict", b'{"instances": [7]}', 400, "instance 0: not an object: int"),
        (
            "/v1/models/taxi:predict",
            json.dumps({"instances": [REQUIRED, dict(REQUIRED, trip_miles=float("nan"))]}).encode(),
            400,
            "instance 1, feature 'trip_miles': unparsable float: 'nan'",
        ),
        (
            "/v1/models/taxi:predict",
            json.dumps({"instances": [dict(REQUIRED, fare="Infinity")]}).encode(),
            400,
            "instance 0, feature 'fare': unparsable float",
        ),
        ("/v1/models/taxi:predict", b'{"instances": [' + b"{}," * 100_000 + b"{}]}", 400, "too many instances: 100001"),
        ("/v1/models/taxi:predict", b'{"instances": {"a": 1}}', 400, "'instances' must be a non-empty list"),
        ("/v1/models/other:predict", b'{"instances": []}', 404, "Servable not found for request: Latest(other)"),
        ("/v1/models/taxi:explain", b"{}", 404, "no such resource"),
        (
            "/v1/models/taxi:predict",
            json.dumps({"signature_name": "transform_features", "instances": [REQUIRED]}).encode(),
            400,
            "Serving signature name: 'transform_features' not found in signature def",
        ),
    ],
)
def test_malformed_requests_get_an_error_not_a_crash(server, path, body, status, error):
    got_status, got = _call(server + path, body)
    assert got_status == status and got["error"].startswith(error)
    assert _call(f"{server}/v1/models/taxi")[0] == 200  # still serving


def _served_url(process: subprocess.Popen) -> str:
    """The REST URL a `skewless serve` process prints once it listens (TensorFlow's notices come first)."""
    for line in process.stderr:
        found = re.search(r"on (http://127\.0\.0\.1:\d+/v1/models/default)", line)
        if found:
            return found.group(1)
    raise AssertionError("the server did not start")


def test_the_serve_console_script_answers_over_http(run_dir):
    import os
    import subprocess
    import sys

    out, _ = run_dir
    skewless = os.path.join(os.path.dirname(sys.executable), "skewless")
    if not os.path.exists(skewless):
        pytest.skip("the package is not installed (run `make test`)")
    process = subprocess.Popen(
        [skewless, "serve", "--model", str(out / "serving_model"), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _served_url(process)
        assert _call(url)[0] == 200
        status, body = _call(url + ":predict", json.dumps({"instances": [REQUIRED]}).encode())
        assert status == 200 and body["predictions"][0]["trip_start_hour_xf"] == 19
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_requests_share_a_kept_alive_connection_and_each_reply_leaves_in_one_write(server):
    import http.client
    import time

    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"instances": [REQUIRED]})
    seconds = []
    for _ in range(20):
        started = time.perf_counter()
        connection.request("POST", "/v1/models/taxi:predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 1
        seconds.append(time.perf_counter() - started)
    assert response.version == 11 and connection.sock is not None  # one connection, still open
    connection.close()
    # a reply split into small writes waits ~40 ms on delayed ACKs each time; the graph takes ~1 ms
    assert sorted(seconds)[10] < 0.03, seconds


def test_an_oversized_request_gets_its_413_not_a_reset_connection(model):
    import http.client

    small = Server(model, ServerOptions(port=0, model_name="taxi", max_request_bytes=1 << 20)).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", small.rest_port, timeout=30)
        big = b'{"instances": [' + b"{}," * (1 << 20) + b"{}]}"  # 3 MiB
        connection.request("POST", "/v1/models/taxi:predict", big, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == {"error": f"request larger than {1 << 20} bytes"}
        assert response.getheader("Connection") == "close"
        connection.close()
    finally:
        small.stop()


def test_metadata_metrics_and_unknown_features_counted(server):
    status, metadata = _call(f"{server}/v1/models/taxi/metadata")
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert status == 200 and signature["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert set(signature["outputs"]) == {"probabilities"}
    instance = dict(REQUIRED, colour="red", wheels=4)  # unknown: ignored
    status, body = _call(f"{server}/v1/models/taxi:predict", json.dumps({"instances": [instance]}).encode())
    assert (
        status == 200
        and body["predictions"]
        == _call(f"{server}/v1/models/taxi:predict", json.dumps({"instances": [REQUIRED]}).encode())[1]["predictions"]
    )
    text = urllib.request.urlopen(f"{server}/monitoring/prometheus/metrics", timeout=30).read().decode()
    assert 'skewless_unknown_features_total{feature="colour"} 1' in text
    assert 'skewless_unknown_features_total{feature="wheels"} 1' in text
    assert re.search(r'skewless_requests_total\{api="rest",outcome="ok"\} \d+', text)


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(model):
    instances = [dict(REQUIRED, trip_start_hour=h, trip_miles=0.5 * h) for h in range(24)]
    expected = model.predict(instances)
    batched = Server(model, ServerOptions(port=0, model_name="taxi", batch_timeout_ms=300, max_batch_size=24)).start()
    try:
        url = f"http://127.0.0.1:{batched.rest_port}/v1/models/taxi:predict"
        answers = [None] * len(instances)

        def ask(i):
            answers[i] = _call(url, json.dumps({"instances": [instances[i]]}).encode())

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(instances))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a[0] for a in answers] == [200] * 24
        assert [a[1]["predictions"][0] for a in answers] == pytest.approx(expected, abs=1e-6)
        assert batched.metrics.batched_examples == 24 and batched.metrics.batches < 24
    finally:
        batched.stop()


@pytest.fixture(scope="module")
def stub(running):
    channel = grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), channel
    channel.close()


def _columns(instances: list[dict]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    for name in instances[0]:
        request.inputs[name].CopyFrom(tf.make_tensor_proto([i[name] for i in instances]))
    return request


def test_grpc_predict_answers_as_rest_does_from_instances_or_examples(stub, server, model):
    prediction, _ = stub
    typed = [
        dict(REQUIRED, trip_start_hour=h, trip_start_month=5, trip_miles=1.0 + h, trip_start_day=6)
        for h in range(0, 24, 5)
    ]
    typed = [{k: (int(v) if k.startswith("trip_start") else v) for k, v in t.items()} for t in typed]
    rest = _call(f"{server}/v1/models/taxi:predict", json.dumps({"instances": typed}).encode())[1]["predictions"]
    response = prediction.Predict(_columns(typed), timeout=30)
    assert response.model_spec.name == "taxi" and response.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(response.outputs["probabilities"]).tolist() == pytest.approx(rest, abs=1e-7)
    request = predict_pb2.PredictRequest()
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(model.examples(typed)))
    by_examples = prediction.Predict(request, timeout=30)
    assert tf.make_ndarray(by_examples.outputs["probabilities"]).tolist() == pytest.approx(rest, abs=1e-7)
    scalars = predict_pb2.PredictRequest()  # a scalar per feature: one instance
    for name, value in typed[1].items():
        scalars.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    by_scalars = prediction.Predict(scalars, timeout=30)
    assert tf.make_ndarray(by_scalars.outputs["probabilities"]).tolist() == pytest.approx(rest[1:2], abs=1e-7)
    scalars.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    with pytest.raises(grpc.RpcError, match="a scalar beside tensors of one value per instance"):
        prediction.Predict(scalars, timeout=30)


def test_rest_classify_and_regress_like_tf_serving(server, model):
    url = f"{server}/v1/models/taxi"
    context = {k: v for k, v in REQUIRED.items() if k != "trip_miles"}
    body = {"context": context, "examples": [{"trip_miles": REQUIRED["trip_miles"]}, {"trip_miles": "9.5"}]}
    status, answer = _call(f"{url}:classify", json.dumps(body).encode())
    expected = model.predict([REQUIRED, dict(REQUIRED, trip_miles="9.5")])
    assert status == 200 and len(answer["results"]) == 2
    for classes, p in zip(answer["results"], expected, strict=True):
        assert [label for label, _ in classes] == ["0", "1"]
        assert [score for _, score in classes] == pytest.approx([1 - p, p], abs=1e-6)
    assert _call(f"{url}:regress", json.dumps(body).encode()) == (
        400,
        {"error": "the model is not a regression model (it has no 'predictions' output)"},
    )
    status, answer = _call(f"{url}:classify", json.dumps({"instances": [REQUIRED]}).encode())
    assert (status, answer) == (400, {"error": "a classify request must be a JSON object with 'examples'"})
    status, answer = _call(f"{url}:classify", json.dumps({"examples": [dict(REQUIRED, trip_start_hour=30)]}).encode())
    assert status == 400 and "instance 0, feature 'trip_start_hour': outside domain" in answer["error"]


def test_grpc_classify_regress_metadata_and_status(stub, model, running):
    prediction, channel = stub
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "taxi"
    for example in model.examples([REQUIRED, dict(REQUIRED, trip_miles="9.5")]):
        request.input.example_list.examples.add().ParseFromString(example)
    result = prediction.Classify(request, timeout=30).result
    expected = model.predict([REQUIRED, dict(REQUIRED, trip_miles="9.5")])
    for classes, p in zip(result.classifications, expected, strict=True):
        assert [c.label for c in classes.classes] == ["0", "1"]
        assert [c.score for c in classes.classes] == pytest.approx([1 - p, p], abs=1e-6)
    regress = regression_pb2.RegressionRequest(input=request.input)
    with pytest.raises(grpc.RpcError) as refused:
        prediction.Regress(regress, timeout=30)
    assert (
        refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a regression model" in refused.value.details()
    )
    metadata = prediction.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]), timeout=30
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def["serving_default"].inputs) == ["examples"]
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(), timeout=30
    )
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.mark.parametrize(
    "request_of, code, detail",
    [
        (
            lambda: _columns([dict(REQUIRED, trip_start_hour=30)]),
            "INVALID_ARGUMENT",
            "instance 0, feature 'trip_start_hour': outside domain",
        ),
        (
            lambda: _columns([{k: v for k, v in REQUIRED.items() if k != "trip_miles"}]),
            "INVALID_ARGUMENT",
            "feature 'trip_miles': missing required",
        ),
        (lambda: predict_pb2.PredictRequest(), "INVALID_ARGUMENT", "no inputs"),
        (
            lambda: predict_pb2.PredictRequest(
                inputs={"trip_miles": tf.make_tensor_proto([1.0, 2.0]), "trip_start_hour": tf.make_tensor_proto([3])}
            ),
            "INVALID_ARGUMENT",
            "inputs have different numbers of instances: [1, 2]",
        ),
        (lambda: predict_pb2.PredictRequest(model_spec={"name": "other"}), "NOT_FOUND", "Servable not found"),
        (
            lambda: predict_pb2.PredictRequest(model_spec={"signature_name": "transform_features"}),
            "INVALID_ARGUMENT",
            "Serving signature name: 'transform_features' not found in signature def (served: 'serving_default')",
        ),
    ],
)
def test_grpc_bad_requests_are_named_errors(stub, request_of, code, detail):
    prediction, _ = stub
    examples_request = predict_pb2.PredictRequest()
    examples_request.inputs["examples"].CopyFrom(tf.make_tensor_proto([b"not a proto"]))
    with pytest.raises(grpc.RpcError) as refused:
        prediction.Predict(request_of(), timeout=30)
    assert refused.value.code() == getattr(grpc.StatusCode, code) and detail in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        prediction.Predict(examples_request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "example 0" in refused.value.details()


def test_sigterm_answers_the_request_in_flight_then_exits(trained):
    skewless = os.path.join(os.path.dirname(sys.executable), "skewless")
    if not os.path.exists(skewless):
        pytest.skip("the package is not installed (run `make test`)")
    # a batch waits 3 s for company: the request is in flight when SIGTERM arrives
    command = [skewless, "serve", "--model", str(trained / "serving"), "--port", "0", "--batch-timeout-ms", "3000"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = _served_url(process)
        answer = {}
        asking = threading.Thread(
            target=lambda: answer.update(r=_call(url + ":predict", json.dumps({"instances": [REQUIRED]}).encode()))
        )
        asking.start()
        import time

        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        asking.join(timeout=60)
        assert answer["r"][0] == 200 and 0 <= answer["r"][1]["predictions"][0] <= 1
        assert process.wait(timeout=60) == 0
        assert "in-flight requests were answered" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux's /proc)."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            children += [int(child) for child in handle.read().split()]
    return children


def test_processes_share_the_ports_and_stop_together(trained):
    skewless = os.path.join(os.path.dirname(sys.executable), "skewless")
    if not os.path.exists(skewless):
        pytest.skip("the package is not installed (run `make test`)")
    command = [skewless, "serve", "--model", str(trained / "serving"), "--port", "0", "--grpc-port", "0"]
    process = subprocess.Popen([*command, "--processes", "2"], stderr=subprocess.PIPE, text=True)
    try:
        url = _served_url(process)  # printed once both processes listen
        (child,) = _children(process.pid)
        answered_by = set()
        for _ in range(40):  # a connection each: the kernel spreads them over the two processes
            request = urllib.request.Request(
                url + ":predict", data=json.dumps({"instances": [REQUIRED]}).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200 and json.loads(response.read())["predictions"][0] <= 1
                answered_by.add(int(response.headers["X-Skewless-Process"]))
        assert answered_by == {process.pid, child}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
        assert not os.path.exists(f"/proc/{child}") or "(Z)" in open(f"/proc/{child}/stat").read()
    finally:
        if process.poll() is None:
            process.kill()
