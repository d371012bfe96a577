"""The Python serving API: an exported model that takes raw feature dicts, decoded as training rows were.

```python
from pipelines.serving.model import ServingModel
model = ServingModel("out/demo/model/serving")          # or out/demo/serving_model
model.predict([{"trip_miles": 1.2, "payment_type": "Cash", ...}])
```

Plain dicts are decoded by training's rules (``serving/instances.py``: types, presence, domains,
the schema's ``SERVING`` environment), encoded as raw tf.Examples and fed to the model's
``serving_default`` signature, so a request is prepared exactly as a training row was. Features the
schema does not know are ignored and counted (``unknown_features``). ``skewless serve`` puts the
same object behind TF Serving's REST and gRPC APIs (``serving/server.py``).
"""

import threading
from collections import Counter

import numpy as np

from pipelines.formats import decode_examples
from pipelines.io import files
from pipelines.prepare import export
from pipelines.serving import instances as requests

__all__ = ["InvalidRequest", "ServingModel", "class_scores", "regression_values", "rows_of_columns"]

MAX_INSTANCES = 100_000  # instances in one request


class InvalidRequest(ValueError):
    """A request the model cannot answer: its message names the instance and the feature."""


class ServingModel:
    """An exported Skewless model (transform-only ``serving_model/`` or a trained ``model/serving/``).

    Args:
        model_dir: The SavedModel directory; its raw schema is read from ``assets.extra/schema.pbtxt``.
        signature: The signature to call (``transform_features`` gives transformed features).
        environment: The schema environment requests are validated in.
    """

    def __init__(self, model_dir: str, signature: str = "serving_default", environment: str = requests.SERVING):
        import tensorflow as tf

        self.model_dir = model_dir
        self.signature_name = signature
        self.raw_schema = export.raw_schema_of(model_dir)
        self.decoder = requests.InstanceDecoder(self.raw_schema, environment)
        self.schema = self.decoder.schema  # as it applies in ``environment``
        self._signature = tf.saved_model.load(model_dir).signatures[signature]
        self._call = _graph_call(self._signature)
        self.output_names = sorted(self._signature.structured_outputs)
        names_file = files.join(model_dir, export.CLASS_NAMES_FILE)
        self.class_names = files.read_json(names_file)["class_names"] if files.exists(names_file) else None
        self.unknown_features = Counter()  # feature name -> times given and ignored
        self._counting = threading.Lock()

    def decode(self, instances: list) -> requests.Decoded:
        """Decodes raw feature dicts (see ``InstanceDecoder.decode``); counts unknown features."""
        decoded = self.decoder.decode(instances)
        if decoded.unknown_features:
            with self._counting:
                self.unknown_features.update(decoded.unknown_features)
        return decoded

    def examples(self, instances: list) -> list[bytes]:
        """Decodes raw feature dicts into serialized raw tf.Examples.

        Raises:
            InvalidRequest: When ``instances`` is not a non-empty list (of at most ``MAX_INSTANCES``),
                or with the first invalid instance's index, feature and reason.
        """
        check_batch(instances)
        decoded = self.decode(instances)
        if decoded.dead_letters:
            raise InvalidRequest(_describe(decoded.dead_letters[0], "instance"))
        return decoded.examples

    def check_examples(self, records: list[bytes]) -> None:
        """Validates serialized raw tf.Examples as ``run`` validates a TFRecord input.

        Raises:
            InvalidRequest: With the first invalid example's index, feature and reason.
        """
        check_batch(records)
        block = decode_examples.decode_examples(records, self.schema, "request")
        if block.dead_letters:
            raise InvalidRequest(_describe(block.dead_letters[0], "example"))

    def predict_examples(self, examples: list[bytes]) -> dict[str, np.ndarray]:
        """Runs the signature on serialized raw tf.Examples; returns output arrays by name."""
        import tensorflow as tf

        outputs = self._call(tf.constant(examples))
        return {name: value.numpy() for name, value in outputs.items()}

    def rows(self, outputs: dict[str, np.ndarray]) -> list:
        """Output arrays as one JSON-ready prediction per row (TF Serving's row format): a model
        with one output gives its value per row; with several, a dict per row."""
        columns = self.columns(outputs)
        if len(self.output_names) == 1:
            return columns
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

    def columns(self, outputs: dict[str, np.ndarray]):
        """Output arrays in TF Serving's columnar format: a model with one output gives its list of
        values; with several, a dict of lists by output name."""
        columns = {name: _jsonable(outputs[name]) for name in self.output_names}
        return columns[self.output_names[0]] if len(columns) == 1 else columns

    def predict(self, instances: list) -> list:
        """Raw feature dicts in, one prediction per instance out (see :meth:`rows`).

        Raises:
            InvalidRequest: As :meth:`examples`.
        """
        return self.rows(self.predict_examples(self.examples(instances)))

    def check_signature(self, name: str) -> None:
        """Raises InvalidRequest unless ``name`` (from a request; empty: the default) is the served
        signature: a request for another one is refused rather than answered by this one."""
        if name and name != self.signature_name:
            raise InvalidRequest(
                f"Serving signature name: {name!r} not found in signature def (served: {self.signature_name!r})"
            )

    def class_labels(self, count: int) -> list[str]:
        """Classify's labels of ``count`` classes: the names ``train`` recorded (the label's
        vocabulary, by class id), else the class ids as text."""
        if self.class_names is not None and len(self.class_names) == count:
            return [str(name) for name in self.class_names]
        return [str(index) for index in range(count)]

    def signature_def(self):
        """The served signature's ``SignatureDef`` proto (for model metadata calls)."""
        from tensorflow.core.protobuf import saved_model_pb2

        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString(files.read_bytes(files.join(self.model_dir, "saved_model.pb")))
        return saved.meta_graphs[0].signature_def[self.signature_name]


def _graph_call(signature):
    """``signature`` as a function of its one input tensor, returning its outputs by name.

    The public call, ``signature(examples=...)``, binds keyword arguments to the structured
    signature and, for gradient tapes, records an access to each of the model's variables on every
    call: a third of a one-example call here (0.15-0.25 ms of 0.6-0.7). A server never records
    gradients, so this calls the traced function with the same flat inputs (the examples, then the
    signature's captured variable handles), as the public call does once no tape is watching. With
    a TensorFlow whose internals differ it falls back to the public call; a test checks that both
    answer the same.
    """
    try:
        inference = signature._inference_function  # noqa: SLF001 - see above
        captured = list(signature.captured_inputs)
        args, kwargs = signature.structured_input_signature
        if args or len(kwargs) != 1 or len(signature.inputs) != 1 + len(captured):
            raise ValueError("not a signature of one input")
        call = inference.call_preflattened
    except (AttributeError, ValueError):
        return lambda examples: signature(examples=examples)

    def call_traced(examples):
        return call([examples, *captured])

    return call_traced


def class_scores(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """A classifier's scores, one row per example and one column per class (a binary model's one
    probability of class 1 as the two classes' ``[1 - p, p]``), for Classify and ``:classify``.

    Raises:
        InvalidRequest: The model has no ``probabilities`` output.
    """
    if "probabilities" not in outputs:
        raise InvalidRequest("the model is not a classifier (it has no 'probabilities' output)")
    probabilities = outputs["probabilities"]
    if probabilities.ndim == 1:  # binary: probability of class 1
        probabilities = np.stack([1 - probabilities, probabilities], axis=1)
    return probabilities


def regression_values(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """A regression model's one value per example, for Regress and ``:regress``.

    Raises:
        InvalidRequest: The model has no ``predictions`` output.
    """
    if "predictions" not in outputs:
        raise InvalidRequest("the model is not a regression model (it has no 'predictions' output)")
    return outputs["predictions"].reshape(-1)


def rows_of_columns(columns: dict[str, list], what: str) -> list[dict]:
    """Columns of one value per instance (by feature) as one dict per instance, for the requests
    that come a feature at a time (REST's ``inputs``, gRPC's tensors).

    Raises:
        InvalidRequest: The columns have different lengths (``what`` names them).
    """
    sizes = {len(values) for values in columns.values()}
    if len(sizes) != 1:
        raise InvalidRequest(f"{what} have different numbers of instances: {sorted(sizes)}")
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def check_batch(items) -> None:
    """Raises InvalidRequest unless ``items`` is a non-empty list of at most ``MAX_INSTANCES``."""
    if not isinstance(items, list) or not items:
        raise InvalidRequest("'instances' must be a non-empty list of objects")
    if len(items) > MAX_INSTANCES:
        raise InvalidRequest(f"too many instances: {len(items)}, at most {MAX_INSTANCES} a request")


def _describe(dead_letter: dict, what: str) -> str:
    where = f"{what} {dead_letter['offset']}"
    if dead_letter["feature"]:
        where += f", feature {dead_letter['feature']!r}"
    return f"{where}: {dead_letter['reason']}"


def _jsonable(array: np.ndarray) -> list:
    """A column of outputs as JSON-ready values (bytes decoded as UTF-8)."""
    if array.dtype == object or array.dtype.kind == "S":
        return [_text(value) for value in array.tolist()]
    return array.tolist()


def _text(value):
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
