"""A baseline model on a run's transformed examples, exported with the transform graph inside.

The label's kind decides the model: a float label is regression (mean squared error; RMSE and MAE);
an int label is classes, two (binary: sigmoid, accuracy, AUC, log loss) or more (softmax, accuracy,
log loss), its ids from 0 (a vocabulary's, or the values seen). Rows whose label is missing (a
negative id, a NaN) are left out of training and evaluation.

Keras choice: tf.Transform 1.21 sets ``TF_USE_LEGACY_KERAS=1`` and its ``transform_features_layer()``
is a ``tf_keras`` (Keras 2) layer, so the model is built with ``tf_keras`` too: one Keras in the
SavedModel, and the exported ``serving_default`` takes raw serialized tf.Examples.
"""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

import schemas
from pipelines.io import files
from pipelines.io import staging as outputs
from pipelines.lineage import recording, run_record
from pipelines.prepare import export

__all__ = ["HASH_BUCKETS", "train"]

HASH_BUCKETS = 1000  # ints with no known cardinality (e.g. census tracts) are folded into this many ids
EMBEDDING_DIM = 8
BATCH_SIZE = 256
SMALL_BATCH_SIZE = 32  # under SMALL_DATA training rows: more steps an epoch, so that a few epochs learn
SMALL_DATA = 8192


REGRESSION, BINARY, MULTICLASS = "regression", "binary", "multiclass"


def _examples(
    output_dir: str, split: str, spec: dict, label: str, shuffle: bool = False, batch_size: int = BATCH_SIZE
) -> tf.data.Dataset:
    """The split's examples in parsed batches, without the rows whose label is missing."""
    paths = files.match(files.join(output_dir, "transformed", f"{split}-*.tfrecord.gz"))
    data = tf.data.TFRecordDataset(paths, compression_type="GZIP")
    if shuffle:
        data = data.shuffle(50_000, seed=0, reshuffle_each_iteration=True)
    data = data.batch(batch_size).map(lambda x: tf.io.parse_example(x, spec))

    def labelled(features):
        values = features[label]
        keep = tf.math.is_finite(values) if values.dtype.is_floating else values >= 0
        return {name: tf.boolean_mask(feature, keep) for name, feature in features.items()}

    return data.map(labelled)


def _dataset(
    output_dir: str, split: str, spec: dict, label: str, shuffle: bool, batch_size: int = BATCH_SIZE
) -> tf.data.Dataset:
    data = _examples(output_dir, split, spec, label, shuffle, batch_size)
    return data.map(lambda features: (features, features.pop(label))).prefetch(tf.data.AUTOTUNE)


def label_kind(
    tft_output: tft.TFTransformOutput, output_dir: str, spec: dict, label: str
) -> tuple[str, int, list[str]]:
    """``(kind, classes, class names)`` of the label: regression (0 classes), binary (2) or multiclass
    (K); the names are the label's vocabulary when it has one, else the ids as text."""
    if spec[label].dtype.is_floating:
        return REGRESSION, 0, []
    try:
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in tft_output.vocabulary_by_name(label)]
    except (ValueError, KeyError, tf.errors.NotFoundError):
        batches = _examples(output_dir, "train", {label: spec[label]}, label).map(lambda f: tf.reduce_max(f[label]))
        names = [str(i) for i in range(int(batches.reduce(tf.constant(-1, tf.int64), tf.maximum).numpy()) + 1)]
    if len(names) < 2:
        raise ValueError(f"label {label!r} has {len(names)} class(es) in the training examples: nothing to learn")
    return (BINARY if len(names) == 2 else MULTICLASS), len(names), names


def _build_model(tft_output: tft.TFTransformOutput, spec: dict, label: str, kind: str, classes: int) -> keras.Model:
    """Embeddings for integer features, float features as they are, two hidden layers, an output
    layer for the label's kind."""
    inputs, parts = {}, []
    for name, feature in sorted(spec.items()):
        if name == label:
            continue
        inputs[name] = keras.Input(shape=(), name=name, dtype=feature.dtype)
        if feature.dtype.is_floating:
            parts.append(keras.layers.Reshape((1,))(inputs[name]))
            continue
        try:
            depth = tft_output.num_buckets_for_transformed_feature(name)
            ids = inputs[name]
        except ValueError:
            depth = HASH_BUCKETS
            ids = keras.layers.Lambda(lambda x: tf.math.floormod(x, HASH_BUCKETS))(inputs[name])
        parts.append(keras.layers.Embedding(depth, EMBEDDING_DIM)(ids))
    hidden = keras.layers.Concatenate()(parts)
    for units in (64, 32):
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    if kind == REGRESSION:
        output = keras.layers.Dense(1, name="predictions")(hidden)
    elif kind == BINARY:
        output = keras.layers.Dense(1, activation="sigmoid", name="probabilities")(hidden)
    else:
        output = keras.layers.Dense(classes, activation="softmax", name="probabilities")(hidden)
    return keras.Model(inputs, output)


class _ServingModule(tf.Module):
    """Raw serialized tf.Examples -> transform graph -> model -> predictions.

    Binary: ``probabilities`` (of class 1); multiclass: ``probabilities`` (one per class) and
    ``classes`` (the most likely class's name, from the label's vocabulary, else its id); regression:
    ``predictions``.
    """

    def __init__(
        self,
        tft_output: tft.TFTransformOutput,
        model: keras.Model,
        inputs: list[str],
        kind: str,
        class_names: list[str],
    ):
        super().__init__()
        self.tft_layer = tft_output.transform_features_layer()
        self.model = model
        self._raw_spec = tft_output.raw_feature_spec()
        self._inputs = inputs
        self._kind = kind
        self._class_names = tf.constant(class_names or ["-"], tf.string)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(self, examples):
        transformed = self.tft_layer(tf.io.parse_example(examples, self._raw_spec))
        features = {name: transformed[name] for name in self._inputs}
        output = self.model(features)
        if self._kind == REGRESSION:
            return {"predictions": tf.reshape(output, [-1])}
        if self._kind == BINARY:
            return {"probabilities": tf.reshape(output, [-1])}
        return {"probabilities": output, "classes": tf.gather(self._class_names, tf.argmax(output, axis=1))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self.tft_layer(tf.io.parse_example(examples, self._raw_spec))


def train(output_dir: str, label: str, epochs: int = 5, dataset: str | None = None, lineage_db=None) -> dict:
    """Trains the baseline, writes ``<output_dir>/model/metrics.json`` and ``model/serving/``.

    Args:
        output_dir: A ``skewless run`` output.
        label: The transformed feature to predict: classes (ids from 0) or a number (a float).
        epochs: Passes over the training examples.
        dataset: The dataset name, for the lineage context.
        lineage_db: The lineage store (default: ``lineage.default_db_path()``).

    Returns:
        The eval metrics (``kind``; classes: accuracy, log_loss, and auc when binary; regression:
        rmse, mae), the training loss, epochs and label.
    """
    recorder = recording.Recorder(
        "train",
        {"transform_output": output_dir, "label": label, "epochs": epochs},
        ("dataset", dataset) if dataset else None,
        None,
        lineage_db,
    )
    try:
        excluded = schemas.load_dataset(dataset).not_model_inputs if dataset else ("row_id",)
        metrics = _train(output_dir, label, epochs, excluded)
    except BaseException as error:
        recorder.fail(error)
        raise
    recorder.input(files.join(output_dir, "transformed"), "TransformedExamples", name="transformed")
    recorder.input(files.join(output_dir, "transform_fn"), "TransformGraph", name="transform_fn")
    recorder.output(files.join(output_dir, "model", "serving"), "Model", name="serving")
    recorder.output(files.join(output_dir, "model", "metrics.json"), "ModelMetrics", name="metrics")
    recorder.finish("succeeded")
    return metrics


def _train(output_dir: str, label: str, epochs: int, excluded: tuple[str, ...] = ("row_id",)) -> dict:
    """Trains on every transformed feature but the label and ``excluded`` (provenance columns)."""
    keras.utils.set_random_seed(0)
    tft_output = tft.TFTransformOutput(output_dir)
    spec = tft_output.transformed_feature_spec()
    if label not in spec:
        raise ValueError(f"label {label!r} is not a transformed feature of {output_dir}")
    spec = {name: feature for name, feature in spec.items() if name not in excluded}
    if spec[label].dtype == tf.string:
        raise ValueError(f"label {label!r} is text: map it to class ids in the preprocessing_fn (a vocabulary)")
    kind, classes, class_names = label_kind(tft_output, output_dir, spec, label)
    model = _build_model(tft_output, spec, label, kind, classes)
    if kind == REGRESSION:
        loss = "mean_squared_error"
        measures = [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]
    elif kind == BINARY:
        loss = "binary_crossentropy"
        measures = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        loss = "sparse_categorical_crossentropy"
        measures = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=measures)
    rows = run_record.require_transform_output(output_dir, "train").get("counts", {}).get("rows_train", SMALL_DATA)
    batch_size = SMALL_BATCH_SIZE if rows < SMALL_DATA else BATCH_SIZE
    train_data = _dataset(output_dir, "train", dict(spec), label, shuffle=True, batch_size=batch_size)
    eval_data = _dataset(output_dir, "eval", dict(spec), label, shuffle=False)
    history = model.fit(train_data, epochs=epochs, verbose=0)
    evaluation = model.evaluate(eval_data, verbose=0, return_dict=True)
    metrics = {"kind": kind}
    if kind == REGRESSION:
        metrics.update(rmse=float(evaluation["rmse"]), mae=float(evaluation["mae"]), mse=float(evaluation["loss"]))
    else:
        metrics.update(classes=classes, accuracy=float(evaluation["accuracy"]), log_loss=float(evaluation["loss"]))
        if kind == BINARY:
            metrics["auc"] = float(evaluation["auc"])
    metrics.update(
        {
            "train_loss": float(history.history["loss"][-1]),
            "epochs": epochs,
            "batch_size": batch_size,
            "label": label,
            "not_model_inputs": sorted(excluded),
        }
    )
    with outputs.staged_directory(files.join(output_dir, "model")) as staging:
        inputs = sorted(name for name in spec if name != label)
        module = _ServingModule(tft_output, model, inputs, kind, class_names if kind == MULTICLASS else [])
        serving_dir = files.join(staging, "serving")
        tf.saved_model.save(
            module,
            serving_dir,
            signatures={
                "serving_default": module.serving_default.get_concrete_function(),
                "transform_features": module.transform_features.get_concrete_function(),
            },
        )
        files.copy(
            files.join(output_dir, "serving_model", export.SCHEMA_FILE), files.join(serving_dir, export.SCHEMA_FILE)
        )
        if kind != REGRESSION:  # Classify's labels (the model itself outputs class ids' scores)
            files.write_json(files.join(serving_dir, export.CLASS_NAMES_FILE), {"class_names": class_names})
        files.write_json(files.join(staging, "metrics.json"), metrics)  # a NaN loss is null: standard JSON
    return metrics
