"""TF Serving's REST API on aiohttp (``skewless serve``; see ``server.py`` for the whole server)."""

import os

import orjson
from aiohttp import web
from google.protobuf import json_format

from pipelines.serving import batching
from pipelines.serving.model import InvalidRequest, class_scores, regression_values

__all__ = ["make_app"]

_PREFIX = "/v1/models/"


_PROCESS = {"X-Skewless-Process": str(os.getpid())}  # which server process answered (with --processes)


def _reply(status: int, payload: dict, close: bool = False) -> web.Response:
    """A JSON answer (orjson: 20x json's speed on 1,000 predictions; NaN is null, standard JSON)."""
    response = web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=_PROCESS
    )
    if close:
        response.force_close()
    return response


def _error(status: int, message: str, close: bool = False) -> web.Response:
    return _reply(status, {"error": message}, close)


def _classify(model, outputs: dict) -> dict:
    """TF Serving's classify answer: per example, ``[[label, score], ...]`` (labels: the class names,
    else their ids)."""
    scores = class_scores(outputs)
    labels = model.class_labels(scores.shape[1])
    return {"results": [[list(pair) for pair in zip(labels, row, strict=True)] for row in scores.tolist()]}


def _regress(model, outputs: dict) -> dict:
    """TF Serving's regress answer: one value per example."""
    return {"results": regression_values(outputs).tolist()}


_ANSWERS = {
    "predict": lambda model, outputs: {"predictions": model.rows(outputs)},
    "classify": _classify,
    "regress": _regress,
}


def make_app(server) -> web.Application:
    """The aiohttp application answering TF Serving's REST calls for ``server.model``.

    Args:
        server: The ``server.Server`` (model, options, batcher, metrics).
    """
    options = server.options
    app = web.Application(client_max_size=options.max_request_bytes)

    def resolve(request: web.Request) -> tuple[str | None, str, web.Response | None]:
        """``/v1/models/<name>[/versions/N][:verb]`` -> (name, verb, an error reply or None)."""
        path = request.path
        if not path.startswith(_PREFIX):
            return None, "", _error(404, f"no such resource: {path}")
        name, _, verb = path[len(_PREFIX) :].partition(":")
        name = name.split("/versions/")[0]
        suffix = ""
        if name.endswith("/metadata"):
            name, suffix = name[: -len("/metadata")], "metadata"
        if name != options.model_name:
            return name, verb, _error(404, f"Servable not found for request: Latest({name})")
        return name, verb or suffix, None

    async def get(request: web.Request) -> web.Response:
        if request.path == "/monitoring/prometheus/metrics":
            return web.Response(text=server.metrics.text(), content_type="text/plain")
        name, verb, error = resolve(request)
        if error is not None:
            return error
        if verb == "metadata":
            return _reply(200, _metadata(server))
        if verb:
            return _error(404, f"no such resource: {request.path}")
        status = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        return _reply(200, {"model_version_status": [status]})

    async def post(request: web.Request) -> web.Response:
        name, verb, error = resolve(request)
        if error is not None:
            return error
        if verb not in _ANSWERS:
            return _error(404, f"no such resource: {request.path} (use /v1/models/<name>:predict)")
        length = request.content_length
        if length is not None and length > options.max_request_bytes:
            # read, not parsed: closing on an unread body resets the connection before the client
            # reads the answer
            async for _ in request.content.iter_chunked(1 << 20):
                pass
            server.metrics.request("rest", "too_large")
            return _error(413, f"request larger than {options.max_request_bytes} bytes", close=True)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body over the limit
            server.metrics.request("rest", "too_large")
            return _error(413, f"request larger than {options.max_request_bytes} bytes", close=True)
        try:
            instances, examples, columnar = server.decode_instances(body, verb)
        except InvalidRequest as invalid:
            server.metrics.request("rest", "invalid")
            return _error(400, str(invalid))
        try:
            outputs = await server.outputs(examples)
        except batching.Overloaded as overloaded:
            server.metrics.request("rest", "overloaded")
            return _error(503, str(overloaded))
        except TimeoutError:
            server.metrics.request("rest", "timeout")
            return _error(504, f"no answer within {options.request_timeout_ms:g} ms")
        except Exception as failure:  # noqa: BLE001 - a failing graph call answers 400, never kills the server
            server.metrics.request("rest", "failed")
            return _error(400, str(failure).strip().splitlines()[0][:500] if str(failure).strip() else repr(failure))
        try:
            answer = {"outputs": server.model.columns(outputs)} if columnar else _ANSWERS[verb](server.model, outputs)
        except InvalidRequest as invalid:
            server.metrics.request("rest", "invalid")
            return _error(400, str(invalid))
        server.metrics.request("rest", "ok", len(instances))
        return _reply(200, answer)

    app.router.add_route("GET", "/{tail:.*}", get)
    app.router.add_route("POST", "/{tail:.*}", post)
    return app


def _metadata(server) -> dict:
    """TF Serving's ``GET /v1/models/<name>/metadata`` answer."""
    signature = json_format.MessageToDict(server.model.signature_def())
    return {
        "model_spec": {"name": server.options.model_name, "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {server.model.signature_name: signature}}},
    }
