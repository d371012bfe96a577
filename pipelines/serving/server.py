"""``skewless serve``: TF Serving's REST and gRPC APIs over a :class:`ServingModel`, with batching.

REST (aiohttp, on an asyncio event loop; see README "Dependencies" for why):
``GET /v1/models/<name>`` (status), ``GET /v1/models/<name>/metadata`` (the signature),
``POST /v1/models/<name>:predict`` with ``{"instances": [raw feature dicts]}`` answering
``{"predictions": [...]}`` (or TF Serving's columnar ``{"inputs": {feature: [values]}}`` answering
``{"outputs": ...}``), and ``GET /monitoring/prometheus/metrics``.
gRPC (``--grpc-port``): ``tensorflow.serving.PredictionService`` (``Predict``, ``Classify``,
``Regress``, ``GetModelMetadata``) and ``ModelService.GetModelStatus``, in ``grpc_api.py``.

Both decode requests on the event loop and await one :class:`Batcher`, which joins concurrent
requests into one graph call. Bad requests get a 400 (``INVALID_ARGUMENT``) naming the instance and
feature; a full queue a 503 (``UNAVAILABLE``); a request past its timeout a 504
(``DEADLINE_EXCEEDED``); a body over the limit a 413 after the body is read (a connection closed
on an unread body is reset before the client reads the answer). SIGTERM stops accepting, answers
what is in flight, then exits.
"""

import asyncio
import json
import signal
import threading
from collections import Counter

import orjson

from pipelines.serving import batching
from pipelines.serving.model import InvalidRequest, ServingModel, rows_of_columns
from pipelines.serving.options import ServerOptions

__all__ = ["Metrics", "Server", "ServerOptions"]


class Metrics:
    """Counters of a server, in Prometheus's text format at ``/monitoring/prometheus/metrics``."""

    def __init__(self, model: ServingModel):
        self._model = model
        self._lock = threading.Lock()
        self.requests = Counter()  # (api, outcome) -> requests
        self.instances = 0
        self.batches = 0
        self.batched_examples = 0

    def request(self, api: str, outcome: str, instances: int = 0) -> None:
        with self._lock:
            self.requests[api, outcome] += 1
            self.instances += instances

    def batch(self, size: int) -> None:
        with self._lock:
            self.batches += 1
            self.batched_examples += size

    def text(self) -> str:
        with self._lock:
            lines = ["# TYPE skewless_requests_total counter"]
            for (api, outcome), count in sorted(self.requests.items()):
                lines.append(f'skewless_requests_total{{api="{api}",outcome="{outcome}"}} {count}')
            lines += ["# TYPE skewless_instances_total counter", f"skewless_instances_total {self.instances}"]
            lines += ["# TYPE skewless_batches_total counter", f"skewless_batches_total {self.batches}"]
            lines += [
                "# TYPE skewless_batched_examples_total counter",
                f"skewless_batched_examples_total {self.batched_examples}",
            ]
        lines.append("# TYPE skewless_unknown_features_total counter")
        for name, count in sorted(self._model.unknown_features.items()):
            lines.append(f'skewless_unknown_features_total{{feature="{_label(name)}"}} {count}')
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Server:
    """The REST (and gRPC) server of one model.

    Args:
        model: The loaded model.
        options: How to serve.
    """

    def __init__(self, model: ServingModel, options: ServerOptions):
        self.model = model
        self.options = options
        self.metrics = Metrics(model)
        self.batcher = batching.Batcher(
            model.predict_examples,
            max_batch_size=options.max_batch_size,
            batch_timeout=options.batch_timeout_ms / 1000,
            workers=options.workers,
            max_queued=options.max_queued,
            on_batch=self.metrics.batch,
        )
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- running ---------------------------------------------------------------------------------

    def serve(self, on_ready=lambda server: None, handle_signals: bool = True, on_stopping=lambda: None) -> None:
        """Serves until SIGTERM or SIGINT (or :meth:`stop`), then drains and returns.

        Args:
            on_ready: Called once both ports listen (their numbers in ``rest_port``, ``grpc_port``).
            handle_signals: Whether SIGTERM and SIGINT stop it (main thread only).
            on_stopping: Called when it starts to stop, before it drains (in the event loop).

        Raises:
            OSError: When a port cannot be bound.
        """
        asyncio.run(self._serve(on_ready, handle_signals, on_stopping))

    def start(self) -> "Server":
        """Serves on a background thread; returns once listening (for tests and embedding)."""
        self._thread = threading.Thread(target=self._serve_in_thread, name="skewless-serve", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        """Stops a server started with :meth:`start` (or serving elsewhere), draining requests."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join()

    def _serve_in_thread(self) -> None:
        try:
            self.serve(handle_signals=False)
        except BaseException as error:  # noqa: BLE001 - handed to start()
            self._failure = error
            self._ready.set()

    async def _serve(self, on_ready, handle_signals: bool, on_stopping=lambda: None) -> None:
        from aiohttp import web

        from pipelines.serving import grpc_api, rest

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        options = self.options
        app = rest.make_app(self)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=options.drain_seconds)
        await runner.setup()
        grpc_server = None
        try:
            site = web.TCPSite(runner, options.host, options.port, backlog=1024, reuse_port=options.reuse_port or None)
            await site.start()
            self.rest_port = site._server.sockets[0].getsockname()[1]
            if options.grpc_port is not None:
                grpc_server, self.grpc_port = await grpc_api.start(self, options.host, options.grpc_port)
            if handle_signals:
                for number in (signal.SIGTERM, signal.SIGINT):
                    self._loop.add_signal_handler(number, self._stop.set)
            self._ready.set()
            on_ready(self)
            await self._stop.wait()
        finally:
            # stop accepting, let in-flight requests finish (aiohttp waits up to shutdown_timeout)
            on_stopping()
            stopping = [runner.cleanup()]
            if grpc_server is not None:
                stopping.append(grpc_server.stop(grace=options.drain_seconds))
            await asyncio.gather(*stopping)
            await asyncio.get_running_loop().run_in_executor(None, self.batcher.close)
            if handle_signals:
                for number in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(number)

    # -- one request, for both APIs ---------------------------------------------------------------

    async def outputs(self, examples: list[bytes], seconds_left: float | None = None) -> dict:
        """The graph's output arrays for decoded examples, batched with other requests.

        Args:
            examples: Serialized raw tf.Examples.
            seconds_left: The client's own deadline, when it sent one (gRPC); the server's request
                timeout applies when shorter.

        Raises:
            batching.Overloaded: The queue is full.
            TimeoutError: No answer within the timeout.
            Exception: What the graph call raised.
        """
        timeout = self.options.request_timeout_ms / 1000
        if seconds_left is not None:
            timeout = min(timeout, seconds_left)
        return await self.batcher.run(examples, timeout)

    def decode_instances(self, body: bytes, verb: str = "predict") -> tuple[list, list[bytes], bool]:
        """A REST body -> (instances, examples, columnar).

        ``predict`` takes TF Serving's row format, ``{"instances": [raw feature dicts]}``, or its
        columnar format, ``{"inputs": {feature: [one value per instance]}}`` (``columnar`` is then
        true: the answer is columnar too); ``classify``/``regress`` take ``{"examples": [...],
        "context": {...}}`` (the context's features go into every example).

        Raises:
            InvalidRequest: A malformed body or an invalid instance.
        """
        try:
            request = orjson.loads(body or b"null")  # a third of json's time
        except orjson.JSONDecodeError:
            try:  # NaN and Infinity, which TF Serving accepts (the decoder then names the feature)
                request = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InvalidRequest(f"request body is not JSON: {error}") from None
        if isinstance(request, dict):
            self.model.check_signature(request.get("signature_name") or "")
        if verb != "predict":
            if not isinstance(request, dict) or not isinstance(request.get("examples"), list):
                raise InvalidRequest(f"a {verb} request must be a JSON object with 'examples'")
            context = request.get("context") or {}
            if not isinstance(context, dict) or not all(isinstance(e, dict) for e in request["examples"]):
                raise InvalidRequest("'examples' must be objects and 'context' an object")
            instances = [{**context, **example} for example in request["examples"]]
            return instances, self.model.examples(instances), False
        if isinstance(request, dict) and "inputs" in request and "instances" not in request:
            instances = _rows_of_columns(request["inputs"])
            return instances, self.model.examples(instances), True
        if not isinstance(request, dict) or "instances" not in request:
            raise InvalidRequest("request must be a JSON object with 'instances' (rows) or 'inputs' (columns)")
        instances = request["instances"]
        return instances, self.model.examples(instances), False


def _rows_of_columns(inputs) -> list[dict]:
    """TF Serving's columnar ``inputs`` (a list of values per feature) as one dict per instance."""
    if not isinstance(inputs, dict) or not inputs or not all(isinstance(v, list) for v in inputs.values()):
        raise InvalidRequest("'inputs' must be an object of lists, one value per instance for each feature")
    return rows_of_columns(inputs, "'inputs' lists")
