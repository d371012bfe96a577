"""Sign-up records prepared for a model: what each raw column becomes.

Raw names and types come from ``schemas/people/schema.pbtxt``. Duplicate sign-ups are removed before
this runs (the dataset config's ``dedup:`` section), so analyzers see each person once.
"""

import tensorflow as tf
import tensorflow_transform as tft

from transforms.common import fill_in_missing, transformed_name

__all__ = ["VOCAB_FEATURE_KEYS", "preprocessing_fn"]

VOCAB_FEATURE_KEYS = ["channel", "locality"]
OOV_SIZE = 10


def preprocessing_fn(inputs: dict) -> dict:
    """Vocabularies for channel and locality, the e-mail domain, and presence flags.

    Args:
        inputs: Raw feature tensors keyed by schema name.

    Returns:
        Transformed features (``<name>_xf``).
    """
    outputs = {}
    for key in VOCAB_FEATURE_KEYS:
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            tf.strings.lower(fill_in_missing(inputs[key])), num_oov_buckets=OOV_SIZE, vocab_filename=key
        )
    email = tf.strings.lower(fill_in_missing(inputs["email"]))
    domain = tf.strings.regex_replace(email, r"^[^@]*@?", "")
    outputs[transformed_name("email_domain")] = tft.compute_and_apply_vocabulary(
        domain, num_oov_buckets=OOV_SIZE, vocab_filename="email_domain"
    )
    for key in ("phone", "date_of_birth"):
        present = tf.strings.length(tf.strings.strip(fill_in_missing(inputs[key]))) > 0
        outputs[transformed_name(f"has_{key}")] = tf.cast(present, tf.int64)
    return outputs
