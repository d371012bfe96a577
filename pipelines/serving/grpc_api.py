"""TF Serving's gRPC API (``tensorflow.serving.PredictionService`` and ``ModelService``).

``Predict`` takes either raw instances, one tensor per feature (``inputs["trip_miles"]`` a float
tensor of one value per instance, strings as ``DT_STRING``; a scalar per feature is one instance),
decoded by the same rules as REST instances, or serialized raw tf.Examples in
``inputs["examples"]``, validated as ``run`` validates a TFRecord input. ``Classify`` and
``Regress`` take ``input.example_list``: ``Classify`` answers a classifier (classes labelled by the
names ``train`` recorded, else by their index), ``Regress`` a regression model.
``GetModelMetadata`` gives the served ``SignatureDef``. Every request goes through the server's
batcher; errors are ``INVALID_ARGUMENT`` (naming the instance and feature), ``UNAVAILABLE`` (queue
full), ``DEADLINE_EXCEEDED`` or ``NOT_FOUND`` (another model name). It runs on the REST server's
event loop (``grpc.aio``); gRPC's thread-pool server measured no faster.
"""

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from pipelines.serving import batching
from pipelines.serving.model import InvalidRequest, class_scores, regression_values, rows_of_columns

__all__ = ["start"]

EXAMPLES = "examples"


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


_NUMBERS = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"),
    types_pb2.DT_INT64: (np.int64, "int64_val"),
}
_DTYPES = {np.dtype(numpy_type): dtype for dtype, (numpy_type, _) in _NUMBERS.items()}


def _column(name: str, proto) -> list:
    """One value per instance from a raw-instance input tensor.

    The common shapes (``[n]`` or ``[n, 1]``, values in the typed field or in ``tensor_content``)
    are read directly: ``tf.make_ndarray`` costs ten times as much on a small tensor, and a request
    has a tensor per feature. Other shapes and types go through it.
    """
    dims = proto.tensor_shape.dim
    rank = len(dims)
    if rank == 1 or (rank == 2 and dims[1].size == 1):
        count, dtype, content = dims[0].size, proto.dtype, proto.tensor_content
        if dtype == types_pb2.DT_STRING:
            values = proto.string_val
            if len(values) == count:
                return [value.decode("utf-8", "replace") for value in values]
        elif dtype in _NUMBERS:
            numpy_type, field = _NUMBERS[dtype]
            values = np.frombuffer(content, numpy_type).tolist() if content else getattr(proto, field)
            if len(values) == count:
                return list(values)
    array = tf.make_ndarray(proto)
    if array.ndim == 0:
        raise InvalidRequest(f"input {name!r}: a scalar beside tensors of one value per instance")
    return [_text(value) for value in array.tolist()]


def _text(value):
    """A tensor's value as a request's: bytes as text (as JSON instances give strings)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _columns_to_instances(inputs) -> list[dict]:
    """Predict's raw-instance inputs (one tensor per feature, first dimension the instances) as dicts;
    scalars for every feature are one instance."""
    protos = dict(inputs.items())
    if all(not proto.tensor_shape.dim for proto in protos.values()):
        return [{name: _text(tf.make_ndarray(proto).item()) for name, proto in protos.items()}]
    return rows_of_columns({name: _column(name, proto) for name, proto in protos.items()}, "inputs")


def _tensor_proto(array: np.ndarray):
    """An output array as a TensorProto (numbers packed directly; strings by TensorFlow)."""
    dtype = _DTYPES.get(array.dtype)
    if dtype is None:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_content=np.ascontiguousarray(array).tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server):
        self._server = server

    def _check_name(self, model_spec) -> None:
        name = self._server.options.model_name
        if model_spec.name and model_spec.name != name:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({model_spec.name})")
        self._server.model.check_signature(model_spec.signature_name)

    async def _outputs(self, examples: list[bytes], context) -> dict[str, np.ndarray]:
        try:
            return await self._server.outputs(examples, context.time_remaining())
        except batching.Overloaded as overloaded:
            raise _Abort(grpc.StatusCode.UNAVAILABLE, str(overloaded)) from None
        except TimeoutError:
            raise _Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer within the deadline") from None
        except Exception as failure:  # noqa: BLE001
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(failure).strip().splitlines()[0][:500]) from None

    def _examples_of(self, request_input) -> list[bytes]:
        if request_input.WhichOneof("kind") != "example_list":
            raise InvalidRequest("input must be an example_list")
        records = [example.SerializeToString() for example in request_input.example_list.examples]
        self._server.model.check_examples(records)
        return records

    async def _answer(self, api: str, context, work):
        try:
            response, instances = await work()
        except InvalidRequest as invalid:
            self._server.metrics.request(api, "invalid")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(invalid))
        except _Abort as abort:
            outcome = {grpc.StatusCode.UNAVAILABLE: "overloaded", grpc.StatusCode.DEADLINE_EXCEEDED: "timeout"}
            self._server.metrics.request(api, outcome.get(abort.code, "invalid"))
            await context.abort(abort.code, str(abort))
        self._server.metrics.request(api, "ok", instances)
        return response

    async def Predict(self, request, context):  # noqa: N802 - the service's method names
        async def work():
            self._check_name(request.model_spec)
            model = self._server.model
            if not request.inputs:
                raise InvalidRequest("no inputs")
            if EXAMPLES in request.inputs and len(request.inputs) == 1:
                records = tf.make_ndarray(request.inputs[EXAMPLES]).reshape(-1).tolist()
                model.check_examples(records)
            else:
                records = model.examples(_columns_to_instances(request.inputs))
            outputs = await self._outputs(records, context)
            wanted = list(request.output_filter) or model.output_names
            unknown = sorted(set(wanted) - set(outputs))
            if unknown:
                raise InvalidRequest(f"output_filter names unknown outputs: {unknown}")
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self._server.options.model_name
            response.model_spec.signature_name = model.signature_name
            for name in wanted:
                response.outputs[name].CopyFrom(_tensor_proto(outputs[name]))
            return response, len(records)

        return await self._answer("grpc_predict", context, work)

    async def Classify(self, request, context):  # noqa: N802
        async def work():
            self._check_name(request.model_spec)
            outputs = await self._outputs(self._examples_of(request.input), context)
            probabilities = class_scores(outputs)
            labels = self._server.model.class_labels(probabilities.shape[1])
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = self._server.options.model_name
            for row in probabilities.tolist():
                classes = response.result.classifications.add()
                for label, score in zip(labels, row, strict=True):
                    classes.classes.add(label=label, score=score)
            return response, len(probabilities)

        return await self._answer("grpc_classify", context, work)

    async def Regress(self, request, context):  # noqa: N802
        async def work():
            self._check_name(request.model_spec)
            outputs = await self._outputs(self._examples_of(request.input), context)
            values = regression_values(outputs)
            response = regression_pb2.RegressionResponse()
            response.model_spec.name = self._server.options.model_name
            for value in values.tolist():
                response.result.regressions.add(value=value)
            return response, len(values)

        return await self._answer("grpc_regress", context, work)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        async def work():
            self._check_name(request.model_spec)
            if list(request.metadata_field) not in ([], ["signature_def"]):
                raise InvalidRequest(f"unsupported metadata_field {list(request.metadata_field)}")
            signatures = get_model_metadata_pb2.SignatureDefMap()
            model = self._server.model
            signatures.signature_def[model.signature_name].CopyFrom(model.signature_def())
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = self._server.options.model_name
            response.model_spec.version.value = 1
            response.metadata["signature_def"].Pack(signatures)
            return response, 0

        return await self._answer("grpc_metadata", context, work)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server):
        self._server = server

    async def GetModelStatus(self, request, context):  # noqa: N802
        name = self._server.options.model_name
        if request.model_spec.name and request.model_spec.name != name:
            message = f"Servable not found for request: Latest({request.model_spec.name})"
            await context.abort(grpc.StatusCode.NOT_FOUND, message)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add(version=1)
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


async def start(server, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Starts the gRPC server of ``server`` (a ``server.Server``) on the running event loop;
    returns it and its port."""
    grpc_server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", server.options.max_request_bytes),
            ("grpc.max_send_message_length", 1 << 30),
            ("grpc.so_reuseport", 1 if server.options.reuse_port else 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(server), grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(server), grpc_server)
    bound = grpc_server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    await grpc_server.start()
    return grpc_server, bound
