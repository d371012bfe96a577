"""Skewless pipelines: the jobs, their Beam transforms and the command line.

Importing the package sets two process-wide defaults, each only where the user has not set it:
TensorFlow loads Keras 2 (``tf_keras``) only, as tf.Transform needs, rather than Keras 3 and pandas
with it; and pyarrow's memory pool is made from jemalloc, then the variable removed again so that
tfx-bsl's own Arrow does not log that it ignores it. Why, and what it saves: ``docs/design.md``.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if sys.platform.startswith("linux") and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"  # pyarrow's Linux wheels are built with it
    import pyarrow

    pyarrow.default_memory_pool()  # pyarrow's pool is made now, from the variable, once
    del os.environ["ARROW_DEFAULT_MEMORY_POOL"]  # so that tfx-bsl's own Arrow does not log it ignores it
