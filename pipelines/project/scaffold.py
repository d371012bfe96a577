"""``skewless init``: a dataset project in the user's own repository, ready to run and to edit.

From the input files it writes, under ``DIR``:

* ``schemas/NAME/schema.pbtxt``: the inferred raw schema, annotated with what was observed; every
  feature optional (the label, so that serving requests need not carry it; the others, so that a
  null is filled as pandas would, not refused: tighten what must always be there);
* ``schemas/NAME/config.yaml``: the schema, the ``preprocessing_fn``, the sample, the texts that
  mean a missing value, the label;
* ``transforms/NAME.py``: a working ``preprocessing_fn`` generated from the schema, each choice
  commented: numbers filled and scaled, strings with few values as vocabularies, strings with many
  hashed, identifiers of rows (``id``, R's row names) left out, the label prepared for
  ``skewless train``;
* ``tests/test_NAME.py``: runs the project on a handful of the sample's rows.
"""

import dataclasses
import os
import re

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipelines.errors import UsageError
from pipelines.io import input_files
from pipelines.io.staging import is_local
from pipelines.quality.infer_schema import ColumnFacts, infer

__all__ = ["VOCABULARY_MAX_VALUES", "Project", "init_project"]

VOCABULARY_MAX_VALUES = 100  # strings with at most this many distinct values become vocabularies; more are hashed
HASH_BUCKETS = 1000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENTIFIER = re.compile(r"^(|id|.*[_.]id|index|row_?names?)$", re.IGNORECASE)  # "": R's write.csv row names


def is_identifier(name: str) -> bool:
    """Whether a column names rows rather than describing them (``id``, ``user_id``, R's unnamed
    row-names column): not a model input, since it can only memorise rows (or leak their order)."""
    return bool(_IDENTIFIER.match(name))


@dataclasses.dataclass(frozen=True)
class Project:
    """The files ``skewless init`` wrote, and how the label is prepared."""

    schema: str
    config: str
    module: str
    test: str
    label: str | None
    label_kind: str | None  # "classes" or "regression"
    missing_values: tuple[str, ...]

    @property
    def dataset(self) -> str:
        """The ``--dataset`` value of the project: its schema folder."""
        return os.path.dirname(self.config)


def _required(feature: schema_pb2.Feature) -> bool:
    return feature.presence.min_fraction == 1.0 and len(feature.shape.dim) == 1


def _make_optional(feature: schema_pb2.Feature, why: str) -> None:
    """A feature every sample row had, made optional: a serving request may send a null for it."""
    feature.ClearField("presence")
    feature.ClearField("shape")
    feature.presence.min_count = 0
    feature.value_count.min, feature.value_count.max = 0, 1
    feature.annotation.comment.append(why)


MAX_INT_CLASSES = 20  # an int label spanning more values than this is a number to predict, not classes


def _label_kind(feature: schema_pb2.Feature, facts: ColumnFacts) -> str:
    """``classes`` for text and for ints of a small range (0/1, 1..5), else ``regression``."""
    if feature.type == schema_pb2.BYTES:
        return "classes"
    if feature.type == schema_pb2.INT and facts.minimum is not None:
        return "classes" if facts.maximum - facts.minimum < MAX_INT_CLASSES else "regression"
    return "regression"


def _python_name(name: str) -> str:
    return name if _NAME.match(name) else re.sub(r"\W", "_", name)


def _feature_lines(feature: schema_pb2.Feature, facts: ColumnFacts) -> list[str]:
    """The ``preprocessing_fn`` lines of one raw feature (not the label)."""
    name, key = feature.name, _python_name(feature.name) + "_xf"
    raw = f"inputs[{name!r}]"
    if feature.type in (schema_pb2.INT, schema_pb2.FLOAT):
        return [
            f"    # {name}: a number, sometimes missing: scaled over the rows that have it; missing -> 0 (the mean)",
            f"    outputs[{key!r}] = _dense(tft.scale_to_z_score(_as_float({raw})), 0.0)",
        ]
    distinct = facts.distinct
    if distinct is not None and distinct <= VOCABULARY_MAX_VALUES:
        return [
            f"    # {name}: text with {distinct} distinct values: a vocabulary (ids by frequency), one id for others",
            f"    outputs[{key!r}] = tft.compute_and_apply_vocabulary(",
            f"        _dense({raw}, ''), num_oov_buckets=1, vocab_filename={feature.name!r}",
            "    )",
        ]
    seen = "more than 1,000" if distinct is None else f"{distinct:,}"
    return [
        f"    # {name}: text with {seen} distinct values: hashed into {HASH_BUCKETS} buckets",
        f"    outputs[{key!r}] = tf.strings.to_hash_bucket_fast(_dense({raw}, ''), {HASH_BUCKETS})",
    ]


def _label_lines(feature: schema_pb2.Feature, kind: str) -> list[str]:
    name, key = feature.name, _python_name(feature.name) + "_xf"
    raw = f"inputs[{name!r}]"
    if kind == "regression":
        return [
            f"    # the label {name}: a number to predict (regression); missing -> NaN, left out of training",
            f"    outputs[{key!r}] = _dense(_as_float({raw}), float('nan'))",
        ]
    text = f"_dense({raw}, '')" if feature.type == schema_pb2.BYTES else f"_dense(_as_text({raw}), '')"
    return [
        f"    # the label {name}: classes, as ids 0..K-1 by frequency (its vocabulary names them);",
        "    # a missing label is -1, left out of training",
        f"    label = {text}",
        f"    outputs[{key!r}] = tft.compute_and_apply_vocabulary(",
        f"        label, default_value=-1, vocab_filename={key!r}",
        "    )",
    ]


def _module_text(
    schema: schema_pb2.Schema, columns: dict[str, ColumnFacts], name: str, label: str | None, kind: str | None
) -> str:
    body = []
    for feature in schema.feature:
        if feature.name == label:
            body += _label_lines(feature, kind)
        elif is_identifier(feature.name):
            shown = repr(feature.name) if feature.name else "the unnamed first column (R's row names)"
            body.append(f"    # {shown}: an identifier of rows, not a model input (row_id already traces each row)")
        else:
            body += _feature_lines(feature, columns[feature.name])
        body.append("")
    return f'''"""The ``preprocessing_fn`` of the {name} dataset (generated by ``skewless init``; edit freely).

It runs on Beam over the training data (``skewless run --dataset schemas/{name}``) and is exported
with the serving model, so training and serving prepare every row the same way.
"""

import tensorflow as tf
import tensorflow_transform as tft


def _dense(x, default):
    """A feature as one value a row: a missing value (a sparse feature's empty row) becomes ``default``."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=default)
    return tf.squeeze(x, axis=1)


def _as_float(x):
    """A numeric feature as float32, sparse or dense as it came."""
    if isinstance(x, tf.sparse.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    return tf.cast(x, tf.float32)


def _as_text(x):
    """A feature's values as text (ints as classes), sparse or dense as it came."""
    if isinstance(x, tf.sparse.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    return tf.strings.as_string(x)


def preprocessing_fn(inputs):
    """Raw features in, transformed features out (``<name>_xf``)."""
    outputs = {{}}
{chr(10).join(body).rstrip()}
    return outputs
'''


def _test_text(name: str, dataset: str, expected: list[str], sample: str) -> str:
    return f'''"""Runs the {name} dataset on a handful of its sample's rows (generated by ``skewless init``)."""

import json
import pathlib

import tensorflow_transform as tft

from pipelines import cli

DATASET = (pathlib.Path(__file__).resolve().parent / {dataset!r}).resolve()
SAMPLE = (DATASET / {sample!r}).resolve()


def test_the_preprocessing_fn_runs_on_a_handful_of_rows(tmp_path):
    rows = SAMPLE
    if SAMPLE.suffix in (".csv", ".tsv", ".txt"):  # a text sample: its header and 50 rows
        rows = tmp_path / f"rows{{SAMPLE.suffix}}"
        rows.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:51]))
    out = tmp_path / "out"
    argv = ["run", "--dataset", str(DATASET), "--input", str(rows), "--output", str(out), "--quiet"]
    assert cli.main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["counts"]["rows_dead_lettered"] == 0
    assert record["parity"]["passed"]
    features = tft.TFTransformOutput(str(out)).transformed_feature_spec()
    assert sorted(features) == {sorted(expected)!r}
'''


def init_project(
    name: str,
    inputs: list[str],
    label: str | None = None,
    directory: str = ".",
    force: bool = False,
    delimiter: str | None = None,
    encoding: str | None = None,
    missing_values: tuple[str, ...] = (),
) -> Project:
    """Scaffolds a dataset project from its files (see the module docstring).

    Args:
        name: The dataset's name (a Python identifier: it names the module).
        inputs: CSV, Parquet or TFRecord file patterns.
        label: The column a model predicts, or None.
        directory: The project's root.
        force: Overwrite files that exist.
        delimiter: The CSV field delimiter (None: by the file name).
        encoding: The CSV text encoding when not UTF-8.
        missing_values: Texts that mean a missing value, besides those found.

    Returns:
        What was written.

    Raises:
        UsageError: A bad name, unreadable inputs, a label that is not a column, or a file that
            exists (without ``force``); nothing is written then.
    """
    if not _NAME.match(name):
        raise UsageError(f"the dataset name must be a Python identifier (letters, digits, _), got {name!r}")
    root = os.path.abspath(directory)
    folder = os.path.join(root, "schemas", name)
    project = dict(
        schema=os.path.join(folder, "schema.pbtxt"),
        config=os.path.join(folder, "config.yaml"),
        module=os.path.join(root, "transforms", f"{name}.py"),
        test=os.path.join(root, "tests", f"test_{name}.py"),
    )
    existing = [path for path in project.values() if os.path.exists(path)]
    if existing and not force:
        raise UsageError(
            f"{existing[0]} exists: refusing to overwrite it (pass --force to replace the project's files)"
        )
    schema, tokens, columns = infer(list(inputs), delimiter=delimiter, encoding=encoding, missing_values=missing_values)
    features = {feature.name: feature for feature in schema.feature}
    kind = None
    if label is not None:
        if label not in features:
            raise UsageError(f"--label {label!r} is not a column of the input; columns: {', '.join(features)}")
        kind = _label_kind(features[label], columns[label])
    for feature in schema.feature:
        if feature.name == label:
            _make_optional(feature, f"the label ({kind}): optional, so that serving requests need not carry it")
        elif _required(feature):  # as pandas reads a POC's data: a missing value is never a reason to refuse a row
            _make_optional(
                feature,
                "present in every sample row; optional so that a serving request may send a null (the "
                "preprocessing_fn fills it): make it required (presence, shape) to dead-letter rows without it",
            )
    first = input_files.expand_patterns([inputs[0]])[0][0]
    sample = os.path.relpath(first, folder) if is_local(first) else first
    inputs_used = [n for n in features if n == label or not is_identifier(n)]
    expected = sorted(["row_id", *(_python_name(n) + "_xf" for n in inputs_used)])
    config = _config_text(name, sample, tokens, label, kind)
    module = _module_text(schema, columns, name, label, kind)
    test = _test_text(name, os.path.relpath(folder, os.path.dirname(project["test"])), expected, sample)
    for path, text in (
        (
            project["schema"],
            "# Inferred by `skewless init`: review types, presence and domains.\n"
            + text_format.MessageToString(schema),
        ),
        (project["config"], config),
        (project["module"], module),
        (project["test"], test),
    ):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:  # the user's own repository: local files
            handle.write(text)
    return Project(
        **project, label=_python_name(label) + "_xf" if label else None, label_kind=kind, missing_values=tuple(tokens)
    )


def _yaml_string(text: str) -> str:
    """A YAML double-quoted string (NA, null and NaN stay texts)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config_text(name: str, sample: str, tokens: list[str], label: str | None, kind: str | None) -> str:
    missing = ", ".join(_yaml_string(token) for token in ["", *tokens])
    lines = [
        ("schema: schema.pbtxt", "the raw schema, beside this file"),
        (
            f"preprocessing_fn: ../../transforms/{name}.py:preprocessing_fn",
            "relative to this file, or package.module:fn",
        ),
        (f"sample: {sample}", "read when --input is not given (relative to this file)"),
        (f"missing_values: [{missing}]", "cell texts that mean a missing value"),
        (
            (f"label: {_python_name(label)}_xf", f"the transformed feature `skewless train` predicts ({kind})")
            if label
            else ("label: null", "name a transformed feature here for `skewless train`")
        ),
        ("split_key: []", "columns hashed for the train/eval split; [] = the whole row"),
    ]
    width = max(len(line) for line, _ in lines) + 2
    body = "\n".join(f"{line:<{width}}# {comment}" for line, comment in lines)
    return f"# The {name} dataset (written by `skewless init`): everything `skewless run --dataset` needs.\n{body}\n"
