"""Skewless pipelines: the jobs, their Beam transforms and the command line.

Importing the package makes TensorFlow load Keras 2 (``tf_keras``) only. tf.Transform works with
Keras 2 and sets ``TF_USE_LEGACY_KERAS=1`` itself, but only once TensorFlow is imported, and
TensorFlow loads Keras 3 (and pandas with it) at import unless the variable is set first: 0.4-0.8 s
of every start for a Keras nothing here uses. A value the user set is kept.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
