"""Skewless pipelines: the jobs, their Beam transforms and the command line.

Importing the package sets two process-wide defaults, each only where the user has not set it:

- TensorFlow loads Keras 2 (``tf_keras``) only. tf.Transform works with Keras 2 and sets
  ``TF_USE_LEGACY_KERAS=1`` itself, but only once TensorFlow is imported, and TensorFlow loads
  Keras 3 (and pandas with it) at import unless the variable is set first: 0.4-0.8 s of every start
  for a Keras nothing here uses.
- Arrow allocates from jemalloc (``ARROW_DEFAULT_MEMORY_POOL``) rather than pyarrow's default,
  mimalloc: every batch the jobs decode, filter, spill and transform is a fresh allocation of
  megabytes, and with jemalloc a 1M-row run peaks 80-120 MB lower (1.18-1.20 against 1.27-1.30
  GB); the CPU saving session 12 measured (0.7 s) was within noise when measured again. pyarrow
  reads the variable when it makes its pool, so this package makes it on import (when pyarrow has
  not allocated yet, as in every Skewless command and worker) and then removes the variable again:
  tfx-bsl's own Arrow, built with the system allocator only, would log that it ignores it (a stray
  line in a notebook). A user's own value is kept, and read by both.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if sys.platform.startswith("linux") and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "jemalloc"  # pyarrow's Linux wheels are built with it
    import pyarrow

    pyarrow.default_memory_pool()  # pyarrow's pool is made now, from the variable, once
    del os.environ["ARROW_DEFAULT_MEMORY_POOL"]  # so that tfx-bsl's own Arrow does not log it ignores it
