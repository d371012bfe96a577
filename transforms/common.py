"""TensorFlow helpers shared by the datasets' ``preprocessing_fn``s."""

import tensorflow as tf

__all__ = ["fill_in_missing", "transformed_name"]


def transformed_name(key: str) -> str:
    """Name of the transformed feature made from raw feature ``key``."""
    return f"{key}_xf"


def fill_in_missing(x: tf.Tensor | tf.SparseTensor, default=None) -> tf.Tensor:
    """Turns a raw feature of at most one value per row into a dense 1-D tensor.

    Optional features arrive as ``tf.SparseTensor`` of dense shape ``[batch, 1]`` (missing rows have
    no value); required ones as dense ``[batch, 1]``.

    Args:
        x: The raw feature.
        default: Value for missing rows; ``''`` for strings and ``0`` for numbers when None.

    Returns:
        A dense tensor of shape ``[batch]``.
    """
    if isinstance(x, tf.SparseTensor):
        if default is None:
            default = "" if x.dtype == tf.string else 0
        dense = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
            default_value=tf.constant(default, dtype=x.dtype),
        )
        return tf.squeeze(dense, axis=1)
    return tf.reshape(x, [-1])
