"""Serving entry points: a Python API over an exported model, and a TF Serving-compatible REST server.

```python
from pipelines.serving.model import ServingModel
model = ServingModel("out/demo/serving_model")          # or out/demo/model/serving
model.predict([{"trip_miles": 1.2, "payment_type": "Cash", ...}])
```

Plain dicts are decoded by the same code as training CSV cells (``decode.decode_dicts``), encoded
as raw tf.Examples and fed to the model's ``serving_default`` signature, so a request is prepared
exactly as a training row was.

``skewless serve --model DIR --port N`` answers the TensorFlow Serving REST API:
``GET /v1/models/<name>`` (status) and ``POST /v1/models/<name>:predict`` with
``{"instances": [...]}`` of raw feature dicts, returning ``{"predictions": [...]}``. Malformed
requests get a 400 with ``{"error": "..."}``.
"""

import http.server
import json
import threading

import numpy as np

from pipelines.formats import decode
from pipelines.prepare import export

__all__ = ["ServingModel", "make_server"]

MAX_REQUEST_BYTES = 32 << 20


class ServingModel:
    """An exported Skewless model (transform-only ``serving_model/`` or a trained ``model/serving/``).

    Args:
        model_dir: The SavedModel directory; its raw schema is read from ``assets.extra/schema.pbtxt``.
        signature: The signature to call (``transform_features`` gives transformed features).
    """

    def __init__(self, model_dir: str, signature: str = "serving_default"):
        import tensorflow as tf
        from tfx_bsl.coders import example_coder

        self.model_dir = model_dir
        self.schema = export.raw_schema_of(model_dir)
        self._signature = tf.saved_model.load(model_dir).signatures[signature]
        self._encoder = example_coder.RecordBatchToExamplesEncoder()
        self._lock = threading.Lock()

    def decode(self, instances: list[dict]) -> tuple[list[bytes], list[int], list[dict]]:
        """Decodes raw feature dicts as training CSV cells are decoded.

        Returns:
            Serialized raw tf.Examples of the valid instances, their indices, and a dead letter
            (``offset`` = index) for each invalid one.
        """
        block = decode.decode_dicts(instances, self.schema)
        bad = {d["offset"] for d in block.dead_letters}
        valid = [i for i in range(len(instances)) if i not in bad]
        examples = self._encoder.encode(block.batch) if block.batch is not None else []
        return examples, valid, block.dead_letters

    def examples(self, instances: list[dict]) -> list[bytes]:
        """Decodes raw feature dicts into serialized raw tf.Examples.

        Raises:
            ValueError: With the first invalid instance's index, feature and reason.
        """
        if not isinstance(instances, list) or not instances:
            raise ValueError("'instances' must be a non-empty list of objects")
        examples, _, dead_letters = self.decode(instances)
        if dead_letters:
            first = dead_letters[0]
            where = f"instance {first['offset']}" + (f", feature {first['feature']!r}" if first["feature"] else "")
            raise ValueError(f"{where}: {first['reason']}")
        return examples

    def predict_examples(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        """Runs ``serving_default`` on serialized raw tf.Examples; returns output arrays by name."""
        import tensorflow as tf

        with self._lock:  # one graph call at a time keeps latency predictable on few cores
            outputs = self._signature(examples=tf.constant(examples))
        return {name: value.numpy() for name, value in outputs.items()}

    def predict(self, instances: list[dict]) -> list:
        """Raw feature dicts in, one prediction per instance out (TF Serving's row format).

        A model with one output gives its value per instance; with several, a dict per instance.
        """
        outputs = self.predict_examples(self.examples(instances))
        names = sorted(outputs)
        rows = []
        for i in range(len(instances)):
            values = {name: _jsonable(outputs[name][i]) for name in names}
            rows.append(values[names[0]] if len(names) == 1 else values)
        return rows


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", errors="replace")
    return value.item() if isinstance(value, np.generic) else value


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "skewless-serving"
    # keep-alive (every reply has a Content-Length), and each reply written whole, flushed once:
    # headers and body in separate small writes wait on TCP's delayed acknowledgement
    protocol_version = "HTTP/1.1"
    wbufsize = -1
    model: ServingModel
    model_name: str

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # no per-request logging on stderr

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _discard(self, length: int, chunk: int = 1 << 20) -> None:
        """Reads and drops ``length`` bytes of the request body."""
        while length > 0:
            read = len(self.rfile.read(min(chunk, length)))
            if not read:
                return
            length -= read

    def _model_path(self) -> tuple[str | None, str]:
        """Splits ``/v1/models/<name>[:verb]`` into (name, verb); name None if the path is not one."""
        prefix = "/v1/models/"
        if not self.path.startswith(prefix):
            return None, ""
        name, _, verb = self.path[len(prefix) :].partition(":")
        return name.split("/versions/")[0], verb

    def do_GET(self):  # noqa: N802 - http.server's naming
        name, verb = self._model_path()
        if name is None or verb:
            return self._reply(404, {"error": f"no such resource: {self.path}"})
        if name != self.model_name:
            return self._reply(404, {"error": f"Servable not found for request: Latest({name})"})
        self._reply(
            200,
            {
                "model_version_status": [
                    {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                ]
            },
        )

    def do_POST(self):  # noqa: N802
        name, verb = self._model_path()
        if name is None or verb != "predict":
            return self._reply(404, {"error": f"no such resource: {self.path} (use /v1/models/<name>:predict)"})
        if name != self.model_name:
            return self._reply(404, {"error": f"Servable not found for request: Latest({name})"})
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return self._reply(400, {"error": "invalid Content-Length"})
        if length > MAX_REQUEST_BYTES:
            self._discard(length)  # read, not parsed: closing on an unread body would reset the connection
            self.close_connection = True
            return self._reply(413, {"error": f"request larger than {MAX_REQUEST_BYTES} bytes"})
        try:
            request = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return self._reply(400, {"error": f"request body is not JSON: {error}"})
        if not isinstance(request, dict) or "instances" not in request:
            return self._reply(400, {"error": "request must be a JSON object with 'instances'"})
        try:
            predictions = self.model.predict(request["instances"])
        except ValueError as error:
            return self._reply(400, {"error": str(error)})
        except Exception as error:  # noqa: BLE001 - a failing graph call answers 400, never kills the server
            return self._reply(400, {"error": str(error).strip().splitlines()[0][:500]})
        self._reply(200, {"predictions": predictions})


def make_server(model: ServingModel, host: str, port: int, model_name: str = "default"):
    """A threaded HTTP server answering TF Serving's REST predict and status calls for ``model``.

    Args:
        model: The loaded model.
        host: Address to bind (``127.0.0.1`` keeps it local).
        port: Port; 0 picks a free one (see ``server.server_address``).
        model_name: The ``<name>`` in ``/v1/models/<name>``.

    Returns:
        The ``ThreadingHTTPServer``; call ``serve_forever()``.
    """
    handler = type("Handler", (_Handler,), {"model": model, "model_name": model_name})
    return http.server.ThreadingHTTPServer((host, port), handler)
