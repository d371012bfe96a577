"""Schema validation of decoded rows: presence, value counts and value domains.

Vectorised over a list-typed RecordBatch with Arrow compute; only the violating rows are visited
in Python, to write their reasons.
"""

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2

__all__ = [
    "SERVING",
    "TRAINING",
    "domain_bounds",
    "find_violations",
    "for_environment",
    "in_environment",
    "is_required",
    "string_domain_of",
]

TRAINING, SERVING = "TRAINING", "SERVING"  # the environments TFDV's schemas name


def in_environment(schema: schema_pb2.Schema, feature: schema_pb2.Feature, environment: str) -> bool:
    """Whether ``feature`` is in ``environment``, as TFDV reads a schema: it is when it lists the
    environment in ``in_environment``, or lists none there, the schema's ``default_environment``
    names it (or names none) and ``not_in_environment`` does not."""
    if feature.in_environment:
        return environment in feature.in_environment
    defaults = set(schema.default_environment)
    return (not defaults or environment in defaults) and environment not in feature.not_in_environment


def for_environment(schema: schema_pb2.Schema, environment: str) -> schema_pb2.Schema:
    """The schema as it applies in ``environment``: features not in it are not required.

    A feature is in an environment when it lists it in ``in_environment``, or lists none there and
    does not list it in ``not_in_environment`` (with ``default_environment`` naming where features
    without ``in_environment`` belong, as TFDV reads it). A schema without environments is returned
    unchanged.
    """
    if not schema.default_environment and not any(f.in_environment or f.not_in_environment for f in schema.feature):
        return schema
    relaxed = schema_pb2.Schema()
    relaxed.CopyFrom(schema)
    for feature in relaxed.feature:
        if not in_environment(schema, feature, environment):
            feature.presence.min_fraction = 0.0
            feature.presence.min_count = 0
    return relaxed


def is_required(feature: schema_pb2.Feature) -> bool:
    """Whether every row must have a value (presence.min_fraction 1)."""
    return feature.presence.min_fraction >= 1.0


def domain_bounds(feature: schema_pb2.Feature) -> tuple[float | None, float | None]:
    """A numeric feature's ``int_domain`` / ``float_domain`` bounds (None where unbounded)."""
    if feature.HasField("int_domain"):
        domain = feature.int_domain
    elif feature.HasField("float_domain"):
        domain = feature.float_domain
    else:
        return None, None
    return (
        domain.min if domain.HasField("min") else None,
        domain.max if domain.HasField("max") else None,
    )


def string_domain_of(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> list[str] | None:
    """The allowed values of a string feature (inline ``string_domain`` or a named ``domain``)."""
    if feature.HasField("string_domain"):
        return list(feature.string_domain.value)
    if feature.HasField("domain"):
        for domain in schema.string_domain:
            if domain.name == feature.domain:
                return list(domain.value)
        raise ValueError(f"feature {feature.name!r} names an unknown domain {feature.domain!r}")
    return None


def find_violations(batch: pa.RecordBatch, schema: schema_pb2.Schema) -> Iterator[tuple[int, str, str]]:
    """Finds rows that break the schema.

    Args:
        batch: A list-typed batch with one column per schema feature.
        schema: The raw schema.

    Yields:
        ``(row, feature, reason)`` for each violation, in schema order of features.
    """
    for feature in schema.feature:
        column = batch.column(batch.schema.get_field_index(feature.name))
        lengths = np.asarray(pc.list_value_length(column).fill_null(0))
        if is_required(feature):
            for row in np.flatnonzero(lengths == 0):
                yield int(row), feature.name, "missing required feature"
        max_count = feature.value_count.max if feature.HasField("value_count") else None
        if feature.HasField("shape"):
            max_count = int(np.prod([d.size for d in feature.shape.dim]))
        if max_count:
            for row in np.flatnonzero(lengths > max_count):
                yield int(row), feature.name, f"too many values: {lengths[row]}, at most {max_count}"
        values = pc.list_flatten(column)  # every value of the feature, flattened once for the checks below
        allowed = string_domain_of(feature, schema) if feature.type == schema_pb2.BYTES else None
        if allowed is not None:
            out = np.asarray(pc.invert(pc.is_in(values, value_set=pa.array([v.encode() for v in allowed]))))
            for row, value in _flagged(column, values, out):
                value = value.decode("utf-8", "replace")
                yield row, feature.name, f"outside domain: {value!r} not in the string domain"
        if feature.type == schema_pb2.FLOAT:  # NaN or an infinity (from Parquet or tf.Examples) poisons analyzers
            infinite = np.asarray(pc.invert(pc.is_finite(values)).fill_null(False))
            for row, value in _flagged(column, values, infinite):
                yield row, feature.name, f"not a finite float: {value}"
        low, high = domain_bounds(feature)
        if low is None and high is None:
            continue
        out = pa.array(np.zeros(len(values), dtype=bool))
        if low is not None:
            out = pc.or_(out, pc.less(values, low))
        if high is not None:
            out = pc.or_(out, pc.greater(values, high))
        bounds = f"[{'' if low is None else _number(low)}, {'' if high is None else _number(high)}]"
        for row, value in _flagged(column, values, np.asarray(out.fill_null(False))):
            yield row, feature.name, f"outside domain: {_number(value)} not in {bounds}"


def _flagged(column: pa.Array, values: pa.Array, mask: np.ndarray) -> Iterator[tuple[int, object]]:
    """``(row, value)`` for each flattened value of a list column that ``mask`` flags."""
    if not mask.any():
        return
    parents = np.asarray(pc.list_parent_indices(column))
    for index in np.flatnonzero(mask):
        yield int(parents[index]), values[int(index)].as_py()


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)
