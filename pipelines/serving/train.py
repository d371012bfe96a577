"""A baseline model on a run's transformed examples, exported with the transform graph inside.

Keras choice: tf.Transform 1.21 sets ``TF_USE_LEGACY_KERAS=1`` and its ``transform_features_layer()``
is a ``tf_keras`` (Keras 2) layer, so the model is built with ``tf_keras`` too: one Keras in the
SavedModel, and the exported ``serving_default`` takes raw serialized tf.Examples.
"""

import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

import schemas
from pipelines.io import staging as outputs
from pipelines.lineage import recording, run_record
from pipelines.prepare import export

__all__ = ["HASH_BUCKETS", "train"]

HASH_BUCKETS = 1000  # ints with no known cardinality (e.g. census tracts) are folded into this many ids
EMBEDDING_DIM = 8
BATCH_SIZE = 256


def _dataset(output_dir: str, split: str, spec: dict, label: str, shuffle: bool) -> tf.data.Dataset:
    files = tf.io.gfile.glob(os.path.join(output_dir, "transformed", f"{split}-*.tfrecord.gz"))
    data = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle:
        data = data.shuffle(50_000, seed=0, reshuffle_each_iteration=True)
    data = data.batch(BATCH_SIZE).map(lambda x: tf.io.parse_example(x, spec))
    return data.map(lambda features: (features, features.pop(label))).prefetch(tf.data.AUTOTUNE)


def _build_model(tft_output: tft.TFTransformOutput, spec: dict, label: str) -> keras.Model:
    """Embeddings for integer features, float features as they are, two hidden layers."""
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
    output = keras.layers.Dense(1, activation="sigmoid", name="probabilities")(hidden)
    return keras.Model(inputs, output)


class _ServingModule(tf.Module):
    """Raw serialized tf.Examples -> transform graph -> model -> probabilities."""

    def __init__(self, tft_output: tft.TFTransformOutput, model: keras.Model, label: str, inputs: list[str]):
        super().__init__()
        self.tft_layer = tft_output.transform_features_layer()
        self.model = model
        self._raw_spec = tft_output.raw_feature_spec()
        self._label = label
        self._inputs = inputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(self, examples):
        transformed = self.tft_layer(tf.io.parse_example(examples, self._raw_spec))
        features = {name: transformed[name] for name in self._inputs}
        return {"probabilities": tf.reshape(self.model(features), [-1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self.tft_layer(tf.io.parse_example(examples, self._raw_spec))


def train(output_dir: str, label: str, epochs: int = 5, dataset: str | None = None, lineage_db=None) -> dict:
    """Trains the baseline, writes ``<output_dir>/model/metrics.json`` and ``model/serving/``.

    Args:
        output_dir: A ``skewless run`` output.
        label: The transformed feature to predict (binary, 0/1).
        epochs: Passes over the training examples.
        dataset: The dataset name, for the lineage context.
        lineage_db: The lineage store (default: ``lineage.default_db_path()``).

    Returns:
        The eval metrics: accuracy, auc, log_loss, plus row counts and epochs.
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
    recorder.input(os.path.join(output_dir, "transformed"), "TransformedExamples", name="transformed")
    recorder.input(os.path.join(output_dir, "transform_fn"), "TransformGraph", name="transform_fn")
    recorder.output(os.path.join(output_dir, "model", "serving"), "Model", name="serving")
    recorder.output(os.path.join(output_dir, "model", "metrics.json"), "ModelMetrics", name="metrics")
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
    model = _build_model(tft_output, spec, label)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )
    train_data = _dataset(output_dir, "train", dict(spec), label, shuffle=True)
    eval_data = _dataset(output_dir, "eval", dict(spec), label, shuffle=False)
    history = model.fit(train_data, epochs=epochs, verbose=0)
    evaluation = model.evaluate(eval_data, verbose=0, return_dict=True)
    metrics = {
        "accuracy": float(evaluation["accuracy"]),
        "auc": float(evaluation["auc"]),
        "log_loss": float(evaluation["loss"]),
        "train_loss": float(history.history["loss"][-1]),
        "epochs": epochs,
        "label": label,
        "not_model_inputs": sorted(excluded),
    }
    with outputs.staged_directory(os.path.join(output_dir, "model")) as staging:
        module = _ServingModule(tft_output, model, label, sorted(name for name in spec if name != label))
        serving_dir = os.path.join(staging, "serving")
        tf.saved_model.save(
            module,
            serving_dir,
            signatures={
                "serving_default": module.serving_default.get_concrete_function(),
                "transform_features": module.transform_features.get_concrete_function(),
            },
        )
        tf.io.gfile.makedirs(os.path.join(serving_dir, "assets.extra"))
        tf.io.gfile.copy(
            os.path.join(output_dir, "serving_model", export.SCHEMA_FILE),
            os.path.join(serving_dir, export.SCHEMA_FILE),
        )
        with tf.io.gfile.GFile(os.path.join(staging, "metrics.json"), "w") as handle:
            handle.write(run_record.to_json(metrics) + "\n")  # a NaN loss is null: standard JSON
    return metrics
